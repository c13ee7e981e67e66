import CFFmpeg
import Foundation
import Synchronization

/// Picture buffers for the bundled probers' video decoders, kept across decoders and probes.
///
/// A deep probe decodes two or three keyframes with a decoder that lives only for each of them (see
/// `RTSPSession.decoderOnlyForKeyframes`). FFmpeg's default buffers come from a pool that dies with the
/// decoder and are zero-filled when allocated: every keyframe mapped fresh pages (a 1080p picture is
/// 3 MB, ~760 page faults) and cleared them twice, kernel and `memset`. That was about 70 % of a 1080p deep
/// probe's CPU (perf, stop 26). Here freed buffers wait in a free list for the next decoder of the same
/// picture size, and are not cleared: FFmpeg warns that a damaged picture may show what a buffer held
/// before, and the probers never use a damaged picture (flagged corrupt, with decode error flags, or decoded
/// while the decoder logged errors: `RTSPSession.decodeCurrentPacket`); every picture in the process is one
/// of the monitor's own cameras, which the same dashboard users see anyway.
///
/// At most `maxKeptBytes` wait unused; a buffer freed beyond that goes back to the allocator.
public final class PictureBuffers: Sendable {
    /// The process-wide pool (one per plugin library).
    public static let shared = PictureBuffers()

    /// Most bytes of unused buffers kept for reuse: 64 deep probes' worth of 480p pictures, or a dozen 1080p.
    public static let maxKeptBytes = 40 << 20

    private struct Free {
        /// Addresses of unused buffers by size (addresses, so the state stays `Sendable`).
        var bySize: [Int: [Int]] = [:]
        var keptBytes = 0
    }
    private let free = Mutex(Free())

    init() {}

    /// Makes `context` (a video decoder, before `avcodec_open2`) take its picture buffers from this pool.
    /// Decoders without direct rendering, palette and hardware formats keep FFmpeg's own buffers.
    public func serve(_ context: UnsafeMutablePointer<AVCodecContext>) {
        context.pointee.get_buffer2 = { context, frame, flags in
            guard let context, let frame else { return -1 }
            return PictureBuffers.shared.getBuffer(context, frame, flags)
        }
    }

    private func getBuffer(_ context: UnsafeMutablePointer<AVCodecContext>, _ frame: UnsafeMutablePointer<AVFrame>, _ flags: Int32) -> Int32 {
        let format = AVPixelFormat(rawValue: frame.pointee.format)
        guard context.pointee.codec_type == AVMEDIA_TYPE_VIDEO, let codec = context.pointee.codec,
              codec.pointee.capabilities & Int32(AV_CODEC_CAP_DR1) != 0,
              let descriptor = av_pix_fmt_desc_get(format),
              descriptor.pointee.flags & UInt64(AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_HWACCEL) == 0,
              frame.pointee.width > 0, frame.pointee.height > 0 else {
            return avcodec_default_get_buffer2(context, frame, flags)
        }
        // The codec's alignment, then line sizes widened until each is a multiple of its plane's alignment
        // (what FFmpeg's own pool does).
        var width = frame.pointee.width, height = frame.pointee.height
        var align = [Int32](repeating: 1, count: Int(AV_NUM_DATA_POINTERS))
        align.withUnsafeMutableBufferPointer { avcodec_align_dimensions2(context, &width, &height, $0.baseAddress) }
        var linesizes: (Int32, Int32, Int32, Int32) = (0, 0, 0, 0)
        var aligned = false
        while !aligned {
            let code = withUnsafeMutablePointer(to: &linesizes) {
                $0.withMemoryRebound(to: Int32.self, capacity: 4) { av_image_fill_linesizes($0, format, width) }
            }
            if code < 0 { return code }
            width += width & ~(width - 1)
            let sizes = [linesizes.0, linesizes.1, linesizes.2, linesizes.3]
            aligned = zip(sizes, align).allSatisfy { size, step in step <= 0 || size % step == 0 }
        }
        var planeSizes: (Int, Int, Int, Int) = (0, 0, 0, 0)
        var strides: (Int, Int, Int, Int) = (Int(linesizes.0), Int(linesizes.1), Int(linesizes.2), Int(linesizes.3))
        let filled = withUnsafeMutablePointer(to: &planeSizes) { sizes in
            withUnsafeMutablePointer(to: &strides) { strides in
                sizes.withMemoryRebound(to: Int.self, capacity: 4) { sizes in
                    strides.withMemoryRebound(to: Int.self, capacity: 4) { av_image_fill_plane_sizes(sizes, format, height, $0) }
                }
            }
        }
        if filled < 0 { return filled }
        let lines = [linesizes.0, linesizes.1, linesizes.2, linesizes.3]
        let sizes = [planeSizes.0, planeSizes.1, planeSizes.2, planeSizes.3]
        var buffers: [UnsafeMutablePointer<AVBufferRef>] = []
        for size in sizes where size > 0 {
            // FFmpeg's own padding: 16 bytes for SIMD overreads plus the widest stride alignment.
            guard let buffer = buffer(size: size + 16 + 64 - 1) else {
                for var made in buffers as [UnsafeMutablePointer<AVBufferRef>?] { av_buffer_unref(&made) }
                return -12  // AVERROR(ENOMEM)
            }
            buffers.append(buffer)
        }
        withUnsafeMutablePointer(to: &frame.pointee.buf) {
            $0.withMemoryRebound(to: UnsafeMutablePointer<AVBufferRef>?.self, capacity: Int(AV_NUM_DATA_POINTERS)) { slots in
                for (index, buffer) in buffers.enumerated() { slots[index] = buffer }
            }
        }
        withUnsafeMutablePointer(to: &frame.pointee.data) {
            $0.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: Int(AV_NUM_DATA_POINTERS)) { data in
                withUnsafeMutablePointer(to: &frame.pointee.linesize) {
                    $0.withMemoryRebound(to: Int32.self, capacity: Int(AV_NUM_DATA_POINTERS)) { linesize in
                        for (index, buffer) in buffers.enumerated() {
                            data[index] = buffer.pointee.data
                            linesize[index] = lines[index]
                        }
                    }
                }
                frame.pointee.extended_data = data
            }
        }
        return 0
    }

    /// A buffer of `size` bytes: one from the free list, else a new one.
    private func buffer(size: Int) -> UnsafeMutablePointer<AVBufferRef>? {
        let address: Int? = free.withLock { free in
            guard let address = free.bySize[size]?.popLast() else { return nil }
            free.keptBytes -= size
            return address
        }
        let kept = address.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
        let data: UnsafeMutableRawPointer
        if let kept {
            data = kept
        } else {
            guard let made = av_malloc(size) else { return nil }
            data = made
        }
        let reference = av_buffer_create(data.assumingMemoryBound(to: UInt8.self), size, { opaque, data in
            guard let data else { return }
            PictureBuffers.shared.recycle(UnsafeMutableRawPointer(data), size: Int(bitPattern: opaque))
        }, UnsafeMutableRawPointer(bitPattern: size), 0)
        if reference == nil { recycle(data, size: size) }
        return reference
    }

    /// Takes back a buffer whose last reference is gone: kept for reuse while the kept bytes allow.
    private func recycle(_ data: UnsafeMutableRawPointer, size: Int) {
        let address = Int(bitPattern: data)
        let kept = free.withLock { free in
            guard free.keptBytes + size <= Self.maxKeptBytes else { return false }
            free.bySize[size, default: []].append(address)
            free.keptBytes += size
            return true
        }
        if !kept { av_free(data) }
    }
}
