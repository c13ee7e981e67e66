import CFFmpeg
import StreamPulseCore
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
        let columns = min(64, width), rows = min(36, height)
        let plane = reader.plainLumaPlane
        self.columns = columns
        self.rows = rows
        values = [UInt8](unsafeUninitializedCapacity: columns * rows) { out, count in
            for row in 0..<rows {
                let y = row * height / rows + height / (2 * rows)
                for column in 0..<columns {
                    let x = column * width / columns + width / (2 * columns)
                    out[row * columns + column] = plane.map { $0.base[y * $0.stride + x] } ?? reader.luma(x: x, y: y)
                }
            }
            count = columns * rows
        }
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

extension LumaGrid {
    /// The picture downscaled to `columns × rows` cells, each the mean of 4 × 4 luma taps spread over the
    /// cell (sensor noise averages out; about 21,000 reads whatever the resolution).
    public init?(frame: UnsafePointer<AVFrame>, columns: Int = LumaGrid.standardColumns, rows: Int = LumaGrid.standardRows) {
        let width = Int(frame.pointee.width), height = Int(frame.pointee.height)
        guard width >= columns, height >= rows, let reader = PixelReader(frame: frame) else { return nil }
        let taps = 4
        let plane = reader.plainLumaPlane
        var values = [UInt8](repeating: 0, count: columns * rows)
        values.withUnsafeMutableBufferPointer { out in
            for row in 0..<rows {
                let top = row * height / rows, cellHeight = max(1, (row + 1) * height / rows - top)
                for column in 0..<columns {
                    let left = column * width / columns, cellWidth = max(1, (column + 1) * width / columns - left)
                    var sum = 0
                    for ty in 0..<taps {
                        let y = top + (2 * ty + 1) * cellHeight / (2 * taps)
                        if let plane {
                            // 8-bit planar luma (almost every camera): direct reads.
                            let line = plane.base + y * plane.stride
                            for tx in 0..<taps { sum += Int(line[left + (2 * tx + 1) * cellWidth / (2 * taps)]) }
                        } else {
                            for tx in 0..<taps { sum += Int(reader.luma(x: left + (2 * tx + 1) * cellWidth / (2 * taps), y: y)) }
                        }
                    }
                    out[row * columns + column] = UInt8(clamping: (sum + taps * taps / 2) / (taps * taps))
                }
            }
        }
        self.init(columns: columns, rows: rows, values: Data(values))
    }
}

/// The calling thread's CPU time, in microseconds (what a measurement costs, whatever else runs).
public func threadCPUMicroseconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) * 1_000_000 + Double(spec.tv_nsec) / 1000
}

/// Sharpness of a decoded picture at its own resolution.
public enum Sharpness {
    /// On every few rows, the picture averaged in 2 × 2 blocks (which halves sensor noise but keeps a
    /// focused edge within one step): over every edge (a rise of at least 12 luma across `span` blocks),
    /// the share of the rise taken by its steepest step — edge steepness, 0–1. A blurred lens spreads each
    /// edge over many steps; exposure, night and contrast scale every step alike, and sensor noise is far
    /// below an edge, so the figure holds for the same view.
    /// About 100,000 reads at 1080p. Nil for pictures with no contrast (black, uniform) or unreadable formats.
    public static func measure(_ frame: UnsafePointer<AVFrame>, span: Int = 4) -> Double? {
        let width = Int(frame.pointee.width), height = Int(frame.pointee.height)
        guard width > span * 8, height > 8, let reader = PixelReader(frame: frame) else { return nil }
        let rowStep = max(2, height / 48)
        let blocks = width / 2
        // 12 luma, in sums of four pixels.
        let edge = 4 * 12
        var fine = 0, coarse = 0
        var storage = [Int32](repeating: 0, count: blocks)
        let plane = reader.plainLumaPlane
        var y = rowStep / 2
        storage.withUnsafeMutableBufferPointer { line in
            while y + 1 < height {
                if let plane {
                    // 8-bit planar luma (yuv420p and friends, almost every camera): direct reads.
                    let top = UnsafePointer(plane.base + y * plane.stride), bottom = top + plane.stride
                    for u in 0..<blocks {
                        let x = 2 &* u
                        line[u] = Int32(top[x]) &+ Int32(top[x &+ 1]) &+ Int32(bottom[x]) &+ Int32(bottom[x &+ 1])
                    }
                } else {
                    for u in 0..<blocks {
                        let x = 2 * u
                        line[u] = Int32(reader.luma(x: x, y: y)) + Int32(reader.luma(x: x + 1, y: y))
                            + Int32(reader.luma(x: x, y: y + 1)) + Int32(reader.luma(x: x + 1, y: y + 1))
                    }
                }
                // Only real edges count (a rise of at least `edge` luma over the span, far above sensor noise):
                // how much of the rise happens in its steepest single step. Focused: most of it; blurred: a
                // fraction, spread over the span.
                // (Sums of four bytes: the differences cannot overflow, so wrapping arithmetic is exact.)
                func magnitude(_ d: Int32) -> Int32 { (d ^ (d >> 31)) &- (d >> 31) }
                for u in 0..<(blocks - span) {
                    let rise = Int(magnitude(line[u &+ span] &- line[u]))
                    guard rise >= edge else { continue }
                    var steepest: Int32 = 0
                    for k in 0..<span { steepest = max(steepest, magnitude(line[u &+ k &+ 1] &- line[u &+ k])) }
                    fine += min(Int(steepest), rise)
                    coarse += rise
                }
                y += rowStep
            }
        }
        guard coarse > 0 else { return nil }
        return min(1, Double(fine) / Double(coarse))
    }
}

extension PixelReader {
    /// The luma plane when it is plain 8-bit samples one byte apart (the fast path).
    var plainLumaPlane: (base: UnsafeMutablePointer<UInt8>, stride: Int)? {
        guard !rgb, let y = components.first, y.depth == 8, y.shift == 0, y.step == 1, y.offset == 0 else { return nil }
        return (y.base, y.stride)
    }
}

/// Decides frozen and black from a window of samples.
public struct PictureVerdict: Sendable, Equatable {
    public var frozen: Bool
    public var black: Bool
    public var meanLuma: Double
    public var meanDifference: Double?
    /// Frozen although one horizontal band changed (an on-screen clock or date).
    public var onlyBandChanged: Bool

    /// Default thresholds: limited-range black is luma 16, full-range 0, so a mean under 32 with little
    /// spread is black; encoder noise on a still picture stays well under 0.5 of mean difference.
    public static let defaultBlackThreshold = 32.0
    public static let defaultFrozenThreshold = 0.5
    public static let blackMaxSpread = 10.0
    /// The tallest band (fraction of the height) whose change alone does not make a picture live: two
    /// lines of on-screen text.
    public static let maxBandFraction = 0.2

    public init(samples: [LumaSample], blackThreshold: Double?, frozenThreshold: Double?, ignore: [PictureRegion] = []) {
        let last = samples.last
        meanLuma = last?.mean ?? 0
        black = last.map { $0.mean < (blackThreshold ?? Self.defaultBlackThreshold) && $0.standardDeviation < Self.blackMaxSpread } ?? false
        onlyBandChanged = false
        guard samples.count >= 2 else {
            meanDifference = nil
            frozen = false
            return
        }
        let threshold = frozenThreshold ?? Self.defaultFrozenThreshold
        let pairs = zip(samples, samples.dropFirst()).map { FrameDifference(from: $0, to: $1, ignore: ignore) }
        meanDifference = pairs.map(\.mean).reduce(0, +) / Double(pairs.count)
        // Frozen when every consecutive pair is (near-)identical — or identical apart from one band of rows
        // no taller than two lines of text, the same band in every pair (an OSD clock ticking on a frozen
        // picture). Live sensor noise changes rows everywhere, so a noisy static scene stays live.
        if pairs.allSatisfy({ $0.mean < threshold }) {
            frozen = true
        } else if FrameDifference.commonBand(pairs, threshold: threshold, maxFraction: Self.maxBandFraction) != nil {
            frozen = true
            onlyBandChanged = true
        } else {
            frozen = false
        }
    }
}

/// How two samples differ, row by row, outside the ignored regions.
public struct FrameDifference: Sendable, Equatable {
    /// Mean absolute difference over the compared points, 0–255.
    public var mean: Double
    /// Mean absolute difference of each row.
    public var rows: [Double]

    public init(from a: LumaSample, to b: LumaSample, ignore: [PictureRegion] = []) {
        guard a.values.count == b.values.count, a.columns == b.columns, !a.values.isEmpty else {
            mean = 255
            rows = []
            return
        }
        var total = 0, counted = 0
        var rows: [Double] = []
        rows.reserveCapacity(a.rows)
        for row in 0..<a.rows {
            var sum = 0, n = 0
            let fy = (Double(row) + 0.5) / Double(a.rows)
            for column in 0..<a.columns {
                if !ignore.isEmpty, ignore.contains(where: { $0.contains(x: (Double(column) + 0.5) / Double(a.columns), y: fy) }) { continue }
                let index = row * a.columns + column
                sum += abs(Int(a.values[index]) - Int(b.values[index]))
                n += 1
            }
            rows.append(n > 0 ? Double(sum) / Double(n) : 0)
            total += sum
            counted += n
        }
        self.rows = rows
        mean = counted > 0 ? Double(total) / Double(counted) : 0
    }

    /// The rows (first, last) of the one band outside which every pair is identical, when the band is no
    /// taller than `maxFraction` of the picture; nil when changes lie elsewhere too.
    public static func commonBand(_ pairs: [FrameDifference], threshold: Double, maxFraction: Double) -> ClosedRange<Int>? {
        guard let count = pairs.first?.rows.count, count > 0 else { return nil }
        // A row counts as changed in any pair; the rest must be identical in every pair.
        var changed: [Int] = []
        for row in 0..<count where pairs.contains(where: { row < $0.rows.count && $0.rows[row] >= threshold }) { changed.append(row) }
        guard let first = changed.first, let last = changed.last else { return nil }
        guard Double(last - first + 1) <= maxFraction * Double(count) else { return nil }
        return first...last
    }
}
