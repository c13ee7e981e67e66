import CFFmpeg
import StreamPulseCore

/// Decodes single JPEG images with libavcodec's MJPEG decoder, for picture checks. One per session.
public final class JPEGDecoder {
    private var context: UnsafeMutablePointer<AVCodecContext>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var errors: DecoderErrorCounter?

    public init() {
        if let codec = avcodec_find_decoder(AV_CODEC_ID_MJPEG), let ctx = avcodec_alloc_context3(codec) {
            ctx.pointee.thread_count = 1
            errors = DecoderErrorCounter(attachingTo: ctx)
            if avcodec_open2(ctx, codec, nil) >= 0 { context = ctx } else { var c: UnsafeMutablePointer<AVCodecContext>? = ctx; avcodec_free_context(&c) }
        }
        packet = av_packet_alloc()
        frame = av_frame_alloc()
    }

    deinit {
        avcodec_free_context(&context)
        av_packet_free(&packet)
        av_frame_free(&frame)
    }

    /// The luma sample of a JPEG, or nil when it does not decode — or decodes only with errors (FFmpeg then
    /// returns filler pixels, which must not become a black or frozen verdict).
    public func sample(_ jpeg: [UInt8]) -> LumaSample? { analyse(jpeg, full: false)?.sample }

    /// What the host's picture checks need of one decoded JPEG: the frozen/black sample and, when `full`,
    /// the downscaled grid and the sharpness.
    public struct Analysis {
        public var sample: LumaSample
        public var grid: LumaGrid?
        public var sharpness: Double?
        /// CPU time of the grid and the sharpness, in microseconds.
        public var analysisUs: Double?
    }

    /// Decodes a JPEG once and measures it; nil when it does not decode or decodes only with errors.
    public func analyse(_ jpeg: [UInt8], full: Bool) -> Analysis? {
        guard let context, let packet, let frame, !jpeg.isEmpty else { return nil }
        // Decoders may read up to AV_INPUT_BUFFER_PADDING_SIZE (64) bytes past the end: pad with zeros.
        let padded = jpeg + [UInt8](repeating: 0, count: 64)
        return padded.withUnsafeBufferPointer { buffer -> Analysis? in
            // The packet borrows the bytes for the duration of the call (not ref-counted).
            packet.pointee.data = UnsafeMutablePointer(mutating: buffer.baseAddress)
            packet.pointee.size = Int32(jpeg.count)
            defer { packet.pointee.data = nil; packet.pointee.size = 0 }
            let errorsBefore = errors?.count ?? 0
            guard avcodec_send_packet(context, packet) >= 0, avcodec_receive_frame(context, frame) >= 0 else { return nil }
            defer { av_frame_unref(frame) }
            guard (errors?.count ?? 0) == errorsBefore else { return nil }
            let picture = UnsafePointer(frame)
            guard let sample = LumaSample(frame: picture) else { return nil }
            guard full else { return Analysis(sample: sample) }
            let before = threadCPUMicroseconds()
            let grid = LumaGrid(frame: picture), sharpness = Sharpness.measure(picture)
            return Analysis(sample: sample, grid: grid, sharpness: sharpness, analysisUs: (threadCPUMicroseconds() - before).rounded())
        }
    }
}
