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

    /// Samples the luma plane of a decoded frame on a grid of at most 64 × 36 points.
    /// Works for every planar YUV/YUVJ format, whose first plane is luma.
    public init?(frame: UnsafePointer<AVFrame>) {
        let width = Int(frame.pointee.width), height = Int(frame.pointee.height)
        guard width > 0, height > 0, let plane = frame.pointee.data.0 else { return nil }
        let stride = Int(frame.pointee.linesize.0)
        columns = min(64, width)
        rows = min(36, height)
        var values = [UInt8](repeating: 0, count: columns * rows)
        for row in 0..<rows {
            let y = row * height / rows + height / (2 * rows)
            for column in 0..<columns {
                let x = column * width / columns + width / (2 * columns)
                values[row * columns + column] = plane[y * stride + x]
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
