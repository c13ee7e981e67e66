import CFFmpeg
import Foundation
import Logging
import StreamPulseCore
import Synchronization

/// Routes FFmpeg's own log output into the plugin logger, with URLs masked, instead of stderr.
///
/// FFmpeg's log callback is process-wide; the first plugin to install it owns it. Lines are scrubbed of
/// user information in URLs (FFmpeg prints the URLs it opens, credentials included).
public enum FFmpegLog {
    private static let logger = Mutex<Logger?>(nil)

    public static func install(_ newLogger: Logger, level: Int32 = AV_LOG_WARNING) {
        let first = logger.withLock { current -> Bool in
            defer { current = newLogger }
            return current == nil
        }
        guard first else { return }
        av_log_set_level(level)
        av_log_set_callback { object, level, format, arguments in
            if level <= AV_LOG_ERROR { DecoderErrorCounter.count(from: object) }
            guard level <= av_log_get_level(), let format, let arguments else { return }
            var buffer = [CChar](repeating: 0, count: 1024)
            _ = sp_vformat(&buffer, buffer.count, format, arguments)
            let line = String(cString: buffer).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !line.isEmpty, let logger = FFmpegLog.logger.withLock({ $0 }) else { return }
            logger.debug("ffmpeg: \(URLRedaction.scrub(line, secrets: []))")
        }
    }
}

/// Counts the error-level messages one decoder logs ("error y=0 x=0", "concealing … errors"): FFmpeg then
/// still returns a frame, but of filler pixels, which must never become a black or frozen verdict. The
/// counter sits in the decoder's `opaque` field (free for the user), so whichever plugin's copy of the log
/// callback is installed process-wide finds it.
public final class DecoderErrorCounter {
    private let cell = UnsafeMutablePointer<Int>.allocate(capacity: 1)

    /// Attaches a counter to `decoder` (replacing its `opaque`).
    public init(attachingTo decoder: UnsafeMutablePointer<AVCodecContext>) {
        cell.initialize(to: 0)
        attach(to: decoder)
    }

    /// Counts `decoder`'s messages too (a session that reopens its decoder keeps one count).
    public func attach(to decoder: UnsafeMutablePointer<AVCodecContext>) {
        decoder.pointee.opaque = UnsafeMutableRawPointer(cell)
    }

    deinit { cell.deallocate() }

    /// Error-level messages the decoder has logged so far.
    public var count: Int { cell.pointee }

    /// Called by the log callback: counts the message if it came from a decoder carrying a counter.
    static func count(from object: UnsafeMutableRawPointer?) {
        guard let object, let decoderClass = avcodec_get_class() else { return }
        // Every object FFmpeg logs for starts with a pointer to its AVClass.
        guard object.load(as: UnsafePointer<AVClass>?.self) == decoderClass else { return }
        let context = object.assumingMemoryBound(to: AVCodecContext.self)
        guard let opaque = context.pointee.opaque else { return }
        opaque.assumingMemoryBound(to: Int.self).pointee += 1
    }
}

/// Text of an FFmpeg error code.
public func ffmpegErrorText(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 128)
    av_strerror(code, &buffer, buffer.count)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
