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
        av_log_set_callback { _, level, format, arguments in
            guard level <= av_log_get_level(), let format, let arguments else { return }
            var buffer = [CChar](repeating: 0, count: 1024)
            _ = sp_vformat(&buffer, buffer.count, format, arguments)
            let line = String(cString: buffer).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !line.isEmpty, let logger = FFmpegLog.logger.withLock({ $0 }) else { return }
            logger.debug("ffmpeg: \(URLRedaction.scrub(line, secrets: []))")
        }
    }
}

/// Text of an FFmpeg error code.
public func ffmpegErrorText(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 128)
    av_strerror(code, &buffer, buffer.count)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
