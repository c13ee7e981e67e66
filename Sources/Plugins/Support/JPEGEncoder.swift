import CFFmpeg
import Foundation
import Synchronization

/// Scales a decoded frame with libswscale and encodes it as JPEG with libavcodec's MJPEG encoder.
/// Not thread-safe: one encoder per session, or one picture at a time through `encodeOnce`.
public final class JPEGEncoder {
    private var context: UnsafeMutablePointer<AVCodecContext>?
    private var scaler: OpaquePointer?
    private var scaled: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var geometry: (Int32, Int32, Int32, Int32, Int32) = (0, 0, 0, 0, -1)
    private var nextPTS: Int64 = 0
    public let maxWidth: Int
    public let quality: Int32

    /// `quality` is the MJPEG qscale (2 = best, 31 = worst).
    public init(maxWidth: Int, quality: Int32 = 5) {
        self.maxWidth = max(16, maxWidth)
        self.quality = quality
    }

    deinit {
        avcodec_free_context(&context)
        sws_freeContext(scaler)
        av_frame_free(&scaled)
        av_packet_free(&packet)
    }

    /// The JPEG bytes of `frame`, scaled to at most `maxWidth` wide, or nil when encoding failed.
    public func encode(_ frame: UnsafePointer<AVFrame>) -> Data? {
        let srcW = frame.pointee.width, srcH = frame.pointee.height, srcFormat = frame.pointee.format
        guard srcW > 0, srcH > 0 else { return nil }
        let dstW = Int32(min(Int(srcW), maxWidth)) & ~1
        let dstH = max(2, Int32((Int(srcH) * Int(dstW) / Int(srcW))) & ~1)
        if geometry != (srcW, srcH, dstW, dstH, srcFormat) {
            guard prepare(srcW: srcW, srcH: srcH, srcFormat: srcFormat, dstW: dstW, dstH: dstH) else { return nil }
        }
        guard let context, let scaled, let packet else { return nil }
        let scaledRows = withUnsafePointer(to: frame.pointee.data) { src in
            withUnsafePointer(to: frame.pointee.linesize) { srcStride in
                withUnsafeMutablePointer(to: &scaled.pointee.data) { dst in
                    withUnsafeMutablePointer(to: &scaled.pointee.linesize) { dstStride in
                        sws_scale(
                            scaler,
                            UnsafeRawPointer(src).assumingMemoryBound(to: UnsafePointer<UInt8>?.self), UnsafeRawPointer(srcStride).assumingMemoryBound(to: Int32.self),
                            0, srcH,
                            UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self), UnsafeMutableRawPointer(dstStride).assumingMemoryBound(to: Int32.self))
                    }
                }
            }
        }
        guard scaledRows > 0 else { return nil }
        // Encoders reject repeated timestamps: number the frames.
        scaled.pointee.pts = nextPTS
        nextPTS += 1
        guard avcodec_send_frame(context, scaled) >= 0, avcodec_receive_packet(context, packet) >= 0 else { return nil }
        defer { av_packet_unref(packet) }
        return Data(bytes: packet.pointee.data, count: Int(packet.pointee.size))
    }

    /// An idle encoder by address (addresses keep the state `Sendable`), with the width limit and quality it
    /// was made for and the size and pixel format of the last picture it scaled.
    private struct Idle: Sendable {
        var maxWidth: Int, quality: Int32, width: Int32, height: Int32, format: Int32, address: Int
    }
    /// Oldest first.
    private static let idle = Mutex<[Idle]>([])
    /// Most idle encoders kept; the oldest is freed when another comes back.
    public static let maxIdle = 8

    /// The JPEG bytes of one picture, as `encode`, through an encoder kept between calls: a deep probe's
    /// thumbnail no longer opens an MJPEG encoder and builds a scaler every time (~0.5 ms of CPU per 1080p
    /// probe, perf stop 28). An idle encoder made for the same width limit, quality and source picture size
    /// and format is taken first, else one for the same limit and quality (it re-prepares), else a new one.
    public static func encodeOnce(_ frame: UnsafePointer<AVFrame>, maxWidth: Int, quality: Int32 = 5) -> Data? {
        let picture = frame.pointee
        let address: Int? = idle.withLock { idle in
            let fits = { (entry: Idle) in entry.maxWidth == maxWidth && entry.quality == quality }
            let index = idle.lastIndex { fits($0) && ($0.width, $0.height, $0.format) == (picture.width, picture.height, picture.format) }
                ?? idle.lastIndex(where: fits)
            return index.map { idle.remove(at: $0).address }
        }
        let encoder = address.flatMap { UnsafeRawPointer(bitPattern: $0) }
            .map { Unmanaged<JPEGEncoder>.fromOpaque($0).takeRetainedValue() } ?? JPEGEncoder(maxWidth: maxWidth, quality: quality)
        let jpeg = encoder.encode(frame)
        let kept = Idle(maxWidth: maxWidth, quality: quality, width: picture.width, height: picture.height, format: picture.format,
                        address: Int(bitPattern: Unmanaged.passRetained(encoder).toOpaque()))
        let evicted: Int? = idle.withLock { idle in
            idle.append(kept)
            return idle.count > maxIdle ? idle.removeFirst().address : nil
        }
        if let evicted, let old = UnsafeRawPointer(bitPattern: evicted) { Unmanaged<JPEGEncoder>.fromOpaque(old).release() }
        return jpeg
    }

    private func prepare(srcW: Int32, srcH: Int32, srcFormat: Int32, dstW: Int32, dstH: Int32) -> Bool {
        avcodec_free_context(&context)
        sws_freeContext(scaler)
        av_frame_free(&scaled)
        if packet == nil { packet = av_packet_alloc() }
        guard let codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG), let ctx = avcodec_alloc_context3(codec) else { return false }
        ctx.pointee.width = dstW
        ctx.pointee.height = dstH
        ctx.pointee.pix_fmt = AV_PIX_FMT_YUVJ420P
        ctx.pointee.time_base = AVRational(num: 1, den: 25)
        ctx.pointee.flags |= AV_CODEC_FLAG_QSCALE
        ctx.pointee.global_quality = quality * FF_QP2LAMBDA
        ctx.pointee.qmin = quality
        ctx.pointee.qmax = quality
        guard avcodec_open2(ctx, codec, nil) >= 0 else { var c: UnsafeMutablePointer<AVCodecContext>? = ctx; avcodec_free_context(&c); return false }
        context = ctx
        // Area averaging: the right filter for a thumbnail a sixth of the picture's width, and cheaper than
        // bilinear there (1080p to 320 wide, scale + encode: 1.4 ms against 1.8 ms of CPU, stop 28).
        scaler = sws_getContext(srcW, srcH, AVPixelFormat(srcFormat), dstW, dstH, AV_PIX_FMT_YUVJ420P, SWS_AREA, nil, nil, nil)
        guard scaler != nil, let frame = av_frame_alloc() else { return false }
        frame.pointee.width = dstW
        frame.pointee.height = dstH
        frame.pointee.format = AV_PIX_FMT_YUVJ420P.rawValue
        guard av_frame_get_buffer(frame, 0) >= 0 else { return false }
        frame.pointee.quality = quality * FF_QP2LAMBDA
        scaled = frame
        geometry = (srcW, srcH, dstW, dstH, srcFormat)
        return true
    }
}
