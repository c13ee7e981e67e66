import CFFmpeg
import Foundation
import Synchronization

/// Opened single-threaded video decoders, lent to one probe at a time and kept between the keyframes
/// they decode.
///
/// A deep probe decodes two or three keyframes and spends the rest of its window waiting for the network.
/// Opening an H.264 decoder allocates and clears its context and tables (about 1 ms of CPU at 480p, more at
/// 1080p: perf, stop 26), and a probe used to open one three times; here a probe borrows an opened decoder
/// for each keyframe and gives it back. Only a few probes decode at the same instant, so a few idle decoders
/// serve a whole fleet's deep probes.
///
/// Flushing also frees an H.264 decoder's tables, so a decoder that last decoded an IDR picture comes back
/// unflushed (`clean == false`): the next IDR resets it anyway (every reference dropped). Its borrower
/// flushes it before sending anything else. A decoder that reorders pictures (B-frames) is not kept.
///
/// A decoder is lent only to a stream of the same codec, picture size (as announced: the own RTP reader
/// announces none, so its H.264 decoders serve every size, and FFmpeg re-sizes one when the SPS says so) and
/// out-of-band parameters. H.264 and H.265 parameter sets announced in the SDP (Annex B extradata) are not part of that
/// key: the borrower sends them in front of keyframes (`inBandParameters`), so a decoder opened for one
/// camera decodes another's keyframe with that camera's own SPS/PPS. A borrower may also leave with the
/// decoder the parameter-set NAL units it last sent (`parameterSets`), so that the next borrower skips
/// sending the same ones again: FFmpeg parses every H.264 PPS it is sent into a fresh 170 KB zeroed structure
/// with its dequantisation tables computed anew (perf, stop 27: three of them per 1080p keyframe were about
/// a tenth of a deep probe's CPU).
public final class DecoderPool: Sendable {
    /// The process-wide pool (one per plugin library).
    public static let shared = DecoderPool()

    /// Most idle decoders kept, all kinds together; the oldest is closed when another comes back.
    public static let maxIdle = 8

    struct Key: Hashable {
        var codec: UInt32, width: Int32, height: Int32
        /// The extradata itself when it cannot be sent in front of a keyframe; empty otherwise.
        var parameters: [UInt8]
    }

    private struct Idle {
        /// An idle decoder context by address (addresses keep the state `Sendable`), and what `Loan` says of it.
        struct Entry { var key: Key, address: Int, clean: Bool, parameterSets: [[UInt8]]? }
        /// Oldest first.
        var decoders: [Entry] = []
    }
    private let idle = Mutex(Idle())

    init() {}

    /// The stream's decoder key, and its extradata when that is Annex B parameter sets to be sent in front
    /// of keyframes instead.
    static func key(for parameters: UnsafePointer<AVCodecParameters>) -> (key: Key, inBand: Data?) {
        let p = parameters.pointee
        var extradata = Data()
        if let bytes = p.extradata, p.extradata_size > 0 { extradata = Data(bytes: bytes, count: Int(p.extradata_size)) }
        let annexB = (p.codec_id == AV_CODEC_ID_H264 || p.codec_id == AV_CODEC_ID_HEVC)
            && (extradata.starts(with: [0, 0, 1]) || extradata.starts(with: [0, 0, 0, 1]))
        let key = Key(codec: p.codec_id.rawValue, width: p.width, height: p.height, parameters: annexB ? [] : [UInt8](extradata))
        return (key, annexB ? extradata : nil)
    }

    /// The parameter sets a borrower must send in front of each keyframe (nil: none to send).
    public static func inBandParameters(of parameters: UnsafePointer<AVCodecParameters>) -> Data? {
        key(for: parameters).inBand
    }

    /// A decoder lent to a borrower.
    public struct Loan {
        /// The opened decoder.
        public let context: UnsafeMutablePointer<AVCodecContext>
        /// New or flushed: holds no picture of another stream.
        public let clean: Bool
        /// The parameter-set NAL units (start codes included) the decoder was last sent, in order, as its
        /// last borrower said; nil when unknown.
        public let parameterSets: [[UInt8]]?
    }

    /// An opened decoder for a stream with these parameters: an idle one of the same key, else a new one
    /// (nil when the codec cannot be opened). `prepare` runs on a new context before it is opened.
    public func borrow(parameters: UnsafePointer<AVCodecParameters>, codec: UnsafePointer<AVCodec>,
                       prepare: (UnsafeMutablePointer<AVCodecContext>) -> Void) -> Loan? {
        let key = Self.key(for: parameters).key
        let found: Idle.Entry? = idle.withLock { idle in
            idle.decoders.lastIndex(where: { $0.key == key }).map { idle.decoders.remove(at: $0) }
        }
        if let found, let context = UnsafeMutablePointer<AVCodecContext>(bitPattern: found.address) {
            return Loan(context: context, clean: found.clean, parameterSets: found.parameterSets)
        }
        var context = avcodec_alloc_context3(codec)
        guard let opening = context, avcodec_parameters_to_context(opening, parameters) >= 0 else {
            avcodec_free_context(&context)
            return nil
        }
        opening.pointee.thread_count = 1
        prepare(opening)
        guard avcodec_open2(opening, codec, nil) >= 0 else {
            avcodec_free_context(&context)
            return nil
        }
        return Loan(context: opening, clean: true, parameterSets: nil)
    }

    /// Takes a decoder back with no borrower's state (`opaque`) left on it, flushed when `flush` (else it
    /// must have decoded an IDR picture last); closes it when the pool is full or the decoder reorders.
    /// `parameterSets`: the parameter-set NAL units it was last sent and decoded without error (nil: not
    /// known), told to its next borrower.
    public func giveBack(_ context: UnsafeMutablePointer<AVCodecContext>, parameters: UnsafePointer<AVCodecParameters>, flush: Bool,
                         parameterSets: [[UInt8]]? = nil) {
        context.pointee.opaque = nil
        if context.pointee.has_b_frames > 0 { close(context); return }
        var flush = flush
        if !flush {
            // A picture left undelivered would reach the next borrower: take it out, and flush after all.
            var leftover = av_frame_alloc()
            while let frame = leftover, avcodec_receive_frame(context, frame) >= 0 {
                av_frame_unref(frame)
                flush = true
            }
            av_frame_free(&leftover)
        }
        if flush { avcodec_flush_buffers(context) }
        let key = Self.key(for: parameters).key
        let evicted: Int? = idle.withLock { idle in
            idle.decoders.append(Idle.Entry(key: key, address: Int(bitPattern: context), clean: flush, parameterSets: flush ? nil : parameterSets))
            return idle.decoders.count > Self.maxIdle ? idle.decoders.removeFirst().address : nil
        }
        if let evicted, let old = UnsafeMutablePointer<AVCodecContext>(bitPattern: evicted) { close(old) }
    }

    private func close(_ context: UnsafeMutablePointer<AVCodecContext>) {
        var context: UnsafeMutablePointer<AVCodecContext>? = context
        avcodec_free_context(&context)
    }
}
