import CFFmpeg
import Foundation

/// A coarse luma fingerprint of a decoded picture: enough to tell black and frozen pictures apart from
/// live ones, cheap enough to compute on every sampled frame.
public struct LumaSample: Sendable, Equatable {
    /// Grid of luma values (0–255), `columns` × `rows`.
    public var values: [UInt8]
    public var columns: Int
    public var rows: Int

    public var mean: Double { values.isEmpty ? 0 : Double(values.reduce(0) { $0 + Int($1) }) / Double(values.count) }

    public var standardDeviation: Double {
        guard !values.isEmpty else { return 0 }
        let m = mean
        let variance = values.reduce(0.0) { $0 + (Double($1) - m) * (Double($1) - m) } / Double(values.count)
        return variance.squareRoot()
    }

    /// Mean absolute difference with another sample of the same grid, 0–255.
    public func difference(from other: LumaSample) -> Double {
        guard other.values.count == values.count, !values.isEmpty else { return 255 }
        var sum = 0
        for index in values.indices { sum += abs(Int(values[index]) - Int(other.values[index])) }
        return Double(sum) / Double(values.count)
    }

    /// Samples the luma of a decoded frame on a grid of at most 64 × 36 points, in 8-bit terms (0–255)
    /// whatever the pixel format: FFmpeg's pixel-format descriptor says where each pixel's luma sits (plane,
    /// step, offset, shift) and how deep it is, so 10- and 12-bit video (HEVC Main10 decodes to 16-bit
    /// little-endian samples), 4:2:2 and 4:4:4, semi-planar (NV12) and packed (YUYV) formats read right; RGB
    /// formats give their Rec. 601 luma. Nil for formats with no readable samples (hardware, bitstream).
    public init?(frame: UnsafePointer<AVFrame>) {
        let width = Int(frame.pointee.width), height = Int(frame.pointee.height)
        guard width > 0, height > 0, let reader = PixelReader(frame: frame) else { return nil }
        columns = min(64, width)
        rows = min(36, height)
        var values = [UInt8](repeating: 0, count: columns * rows)
        for row in 0..<rows {
            let y = row * height / rows + height / (2 * rows)
            for column in 0..<columns {
                let x = column * width / columns + width / (2 * columns)
                values[row * columns + column] = reader.luma(x: x, y: y)
            }
        }
        self.values = values
    }

    public init(values: [UInt8], columns: Int, rows: Int) {
        self.values = values
        self.columns = columns
        self.rows = rows
    }
}

/// Reads single pixels of a decoded frame through its pixel-format descriptor.
struct PixelReader {
    /// A component's place in the frame: its plane's base and line size, and the descriptor's layout.
    struct Component {
        var base: UnsafeMutablePointer<UInt8>
        var stride: Int
        var step: Int
        var offset: Int
        var shift: Int
        var depth: Int
        /// Chroma subsampling applies (components 1 and 2 of a YUV format).
        var subsampled: Bool
    }

    // AV_PIX_FMT_FLAG_* (libavutil/pixdesc.h), as values: the macros do not import into Swift.
    static let flagBigEndian: UInt64 = 1 << 0, flagPalette: UInt64 = 1 << 1, flagBitstream: UInt64 = 1 << 2
    static let flagHardware: UInt64 = 1 << 3, flagRGB: UInt64 = 1 << 5, flagBayer: UInt64 = 1 << 8, flagFloat: UInt64 = 1 << 9

    let components: [Component]
    let rgb: Bool
    let bigEndian: Bool
    let log2ChromaW: Int, log2ChromaH: Int

    init?(frame: UnsafePointer<AVFrame>) {
        guard let descriptor = av_pix_fmt_desc_get(AVPixelFormat(frame.pointee.format)) else { return nil }
        let d = descriptor.pointee
        let unreadable = Self.flagPalette | Self.flagBitstream | Self.flagHardware | Self.flagBayer | Self.flagFloat
        guard d.flags & unreadable == 0, d.nb_components >= 1 else { return nil }
        rgb = d.flags & Self.flagRGB != 0
        bigEndian = d.flags & Self.flagBigEndian != 0
        log2ChromaW = Int(d.log2_chroma_w)
        log2ChromaH = Int(d.log2_chroma_h)
        let planes = [frame.pointee.data.0, frame.pointee.data.1, frame.pointee.data.2, frame.pointee.data.3]
        let strides = [frame.pointee.linesize.0, frame.pointee.linesize.1, frame.pointee.linesize.2, frame.pointee.linesize.3]
        let described = [d.comp.0, d.comp.1, d.comp.2]
        var components: [Component] = []
        for index in 0..<(rgb ? 3 : 1) {
            guard index < Int(d.nb_components) else { return nil }
            let c = described[index]
            let plane = Int(c.plane)
            // Samples are one byte or one 16-bit word (wider packings such as x2rgb10 are not read).
            guard plane < 4, let base = planes[plane], c.depth >= 1, c.depth + c.shift <= 16, c.step >= 1 else { return nil }
            components.append(Component(base: base, stride: Int(strides[plane]), step: Int(c.step), offset: Int(c.offset),
                                        shift: Int(c.shift), depth: Int(c.depth), subsampled: !rgb && (index == 1 || index == 2)))
        }
        self.components = components
    }

    /// One component's value at (x, y), scaled to 0–255.
    func value(_ c: Component, x: Int, y: Int) -> Int {
        let cx = c.subsampled ? x >> log2ChromaW : x, cy = c.subsampled ? y >> log2ChromaH : y
        let address = c.base + cy * c.stride + cx * c.step + c.offset
        var raw: Int
        if c.depth + c.shift > 8 {
            // A 16-bit word (every FFmpeg format deeper than 8 bits stores its samples in one).
            raw = bigEndian ? Int(address[0]) << 8 | Int(address[1]) : Int(address[1]) << 8 | Int(address[0])
        } else {
            raw = Int(address[0])
        }
        raw = (raw >> c.shift) & ((1 << c.depth) - 1)
        return c.depth >= 8 ? raw >> (c.depth - 8) : raw * 255 / ((1 << c.depth) - 1)
    }

    /// The pixel's luma, 0–255: the Y sample, or Rec. 601 luma of R, G and B.
    func luma(x: Int, y: Int) -> UInt8 {
        guard rgb else { return UInt8(clamping: value(components[0], x: x, y: y)) }
        let r = value(components[0], x: x, y: y), g = value(components[1], x: x, y: y), b = value(components[2], x: x, y: y)
        return UInt8(clamping: (299 * r + 587 * g + 114 * b + 500) / 1000)
    }
}

/// Decides frozen and black from a window of samples.
public struct PictureVerdict: Sendable, Equatable {
    public var frozen: Bool
    public var black: Bool
    public var meanLuma: Double
    public var meanDifference: Double?

    /// Default thresholds: limited-range black is luma 16, full-range 0, so a mean under 32 with little
    /// spread is black; encoder noise on a still picture stays well under 0.5 of mean difference.
    public static let defaultBlackThreshold = 32.0
    public static let defaultFrozenThreshold = 0.5
    public static let blackMaxSpread = 10.0

    public init(samples: [LumaSample], blackThreshold: Double?, frozenThreshold: Double?) {
        let last = samples.last
        meanLuma = last?.mean ?? 0
        black = last.map { $0.mean < (blackThreshold ?? Self.defaultBlackThreshold) && $0.standardDeviation < Self.blackMaxSpread } ?? false
        if samples.count >= 2 {
            let differences = zip(samples, samples.dropFirst()).map { $1.difference(from: $0) }
            meanDifference = differences.reduce(0, +) / Double(differences.count)
            // Frozen only when every consecutive pair is (near-)identical.
            frozen = differences.allSatisfy { $0 < (frozenThreshold ?? Self.defaultFrozenThreshold) }
        } else {
            meanDifference = nil
            frozen = false
        }
    }
}
