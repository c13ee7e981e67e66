import Foundation
import StreamPulseCore

/// Measures on the small luma image a plugin sends with each deep probe (`ImageFacts.grid`). Pure, and
/// cheap: a 48 × 27 grid is 1,296 cells.
public enum PictureChecks {
    /// Edge-structure correlation of two grids of the same size (Pearson correlation of their gradient
    /// magnitudes, −1…1), outside `ignore`. Brightness, contrast, day/night and IR switching scale the
    /// gradients but keep where they are, so the same view correlates highly; a moved, zoomed or blocked
    /// view moves or removes the edges. Nil when either grid has no structure to compare.
    public static func edgeCorrelation(_ a: LumaGrid, _ b: LumaGrid, ignore: [PictureRegion] = []) -> Double? {
        guard a.columns == b.columns, a.rows == b.rows, a.values.count == b.values.count, a.columns >= 3, a.rows >= 3 else { return nil }
        let ga = gradients(a), gb = gradients(b)
        let mask = cellMask(a, ignore: ignore)
        var n = 0.0, sa = 0.0, sb = 0.0, saa = 0.0, sbb = 0.0, sab = 0.0
        for index in ga.indices where mask[index] {
            let x = ga[index], y = gb[index]
            n += 1; sa += x; sb += y; saa += x * x; sbb += y * y; sab += x * y
        }
        guard n > 8 else { return nil }
        let va = saa - sa * sa / n, vb = sbb - sb * sb / n
        guard va > 1e-9, vb > 1e-9 else { return nil }
        return (sab - sa * sb / n) / (va * vb).squareRoot()
    }

    /// Whether two pictures show the same view: their edges correlate (≥ `minCorrelation`), or, when
    /// either has no structure to compare (a lens fully covered), their luma barely differs. Two damaged
    /// or half-composed pictures in a row rarely agree; a camera that really moved shows its new view twice.
    public static func sameView(_ a: LumaGrid, _ b: LumaGrid, ignore: [PictureRegion] = [], minCorrelation: Double = 0.8) -> Bool {
        if let correlation = edgeCorrelation(a, b, ignore: ignore) { return correlation >= minCorrelation }
        guard let still = stillness(a, b, ignore: ignore, threshold: 6) else { return false }
        return still.mean < 6
    }

    /// Gradient magnitude (|dx| + |dy|, central differences) of each inner cell; border cells are 0.
    static func gradients(_ g: LumaGrid) -> [Double] {
        var out = [Double](repeating: 0, count: g.values.count)
        g.values.withUnsafeBytes { raw in
            let v = raw.bindMemory(to: UInt8.self)
            for row in 1..<(g.rows - 1) {
                for column in 1..<(g.columns - 1) {
                    let i = row * g.columns + column
                    let dx = Int(v[i + 1]) - Int(v[i - 1]), dy = Int(v[i + g.columns]) - Int(v[i - g.columns])
                    out[i] = Double(abs(dx) + abs(dy))
                }
            }
        }
        return out
    }

    /// Which cells count (inner cells outside every ignored region).
    static func cellMask(_ g: LumaGrid, ignore: [PictureRegion]) -> [Bool] {
        var mask = [Bool](repeating: false, count: g.values.count)
        for row in 1..<max(1, g.rows - 1) {
            let fy = (Double(row) + 0.5) / Double(g.rows)
            for column in 1..<max(1, g.columns - 1) {
                let fx = (Double(column) + 0.5) / Double(g.columns)
                mask[row * g.columns + column] = !ignore.contains { $0.contains(x: fx, y: fy) }
            }
        }
        return mask
    }

    /// Share of the picture (0–1) covered by uniform blocks: blocks of 4 × 3 cells whose cells differ by
    /// no more than a small fraction of the picture's own spread (so a dim night scene, whose spread
    /// shrinks with it, is not "uniform"). Paint, tape or a bag in front of the lens is uniform; a real
    /// scene rarely is, apart from sky and walls.
    public static func uniformCoverage(_ g: LumaGrid, ignore: [PictureRegion] = []) -> Double {
        let blocks = uniformBlocks(g, ignore: ignore).compactMap { $0 }
        return blocks.isEmpty ? 0 : Double(blocks.filter { $0 }.count) / Double(blocks.count)
    }

    /// Share (0–1) of the reference's structured blocks (not uniform there) that are uniform now: what a
    /// cover hides of the view. Sky and walls, uniform in the reference already, do not count, so the
    /// figure does not depend on how much of the scene was plain to begin with. Nil when the reference
    /// has no structured block or the grids differ in size.
    public static func structureCovered(_ now: LumaGrid, reference: LumaGrid, ignore: [PictureRegion] = []) -> Double? {
        guard now.columns == reference.columns, now.rows == reference.rows else { return nil }
        let before = uniformBlocks(reference, ignore: ignore), after = uniformBlocks(now, ignore: ignore)
        var structured = 0, covered = 0
        for (was, isNow) in zip(before, after) {
            guard let was, let isNow, !was else { continue }
            structured += 1
            if isNow { covered += 1 }
        }
        return structured > 0 ? Double(covered) / Double(structured) : nil
    }

    /// Each 4 × 3-cell block, row by row: uniform or not; nil for a block inside an ignored region.
    static func uniformBlocks(_ g: LumaGrid, ignore: [PictureRegion]) -> [Bool?] {
        let bw = 4, bh = 3
        guard g.columns >= bw, g.rows >= bh, !g.values.isEmpty else { return [] }
        let sorted = g.values.sorted()
        let spread = Double(Int(sorted[sorted.count * 95 / 100]) - Int(sorted[sorted.count * 5 / 100]))
        let limit = max(2.0, spread * 0.05)
        var out: [Bool?] = []
        out.reserveCapacity((g.columns / bw) * (g.rows / bh))
        g.values.withUnsafeBytes { raw in
            let v = raw.bindMemory(to: UInt8.self)
            var by = 0
            while by + bh <= g.rows {
                var bx = 0
                while bx + bw <= g.columns {
                    let cx = (Double(bx) + Double(bw) / 2) / Double(g.columns), cy = (Double(by) + Double(bh) / 2) / Double(g.rows)
                    if ignore.contains(where: { $0.contains(x: cx, y: cy) }) {
                        out.append(nil)
                    } else {
                        var low = 255, high = 0
                        for y in by..<(by + bh) { for x in bx..<(bx + bw) { let value = Int(v[y * g.columns + x]); low = min(low, value); high = max(high, value) } }
                        out.append(Double(high - low) <= limit)
                    }
                    bx += bw
                }
                by += bh
            }
        }
        return out
    }

    /// The grid halved in each direction (2 × 2 means), kept per stream to compare with the next probe.
    public static func halved(_ g: LumaGrid) -> LumaGrid {
        let columns = g.columns / 2, rows = g.rows / 2
        var out = [UInt8](repeating: 0, count: columns * rows)
        g.values.withUnsafeBytes { raw in
            let v = raw.bindMemory(to: UInt8.self)
            for row in 0..<rows {
                for column in 0..<columns {
                    let i = 2 * row * g.columns + 2 * column
                    let top = Int(v[i]) + Int(v[i + 1])
                    let bottom = Int(v[i + g.columns]) + Int(v[i + g.columns + 1])
                    out[row * columns + column] = UInt8((top + bottom + 2) / 4)
                }
            }
        }
        return LumaGrid(columns: columns, rows: rows, values: Data(out))
    }

    /// How two pictures of the same grid differ outside `ignore`: the mean absolute difference, and the
    /// same with one band of rows (no taller than `maxBandFraction`) set aside when the change is confined
    /// to it (an on-screen clock).
    public static func stillness(_ a: LumaGrid, _ b: LumaGrid, ignore: [PictureRegion] = [], threshold: Double,
                                 maxBandFraction: Double = 0.2) -> (mean: Double, onlyBand: Bool)? {
        guard a.columns == b.columns, a.rows == b.rows, a.values.count == b.values.count, !a.values.isEmpty else { return nil }
        var rowMeans: [Double] = []
        var total = 0.0, counted = 0.0
        for row in 0..<a.rows {
            var sum = 0, n = 0
            let fy = (Double(row) + 0.5) / Double(a.rows)
            for column in 0..<a.columns {
                if !ignore.isEmpty, ignore.contains(where: { $0.contains(x: (Double(column) + 0.5) / Double(a.columns), y: fy) }) { continue }
                let i = row * a.columns + column
                sum += abs(Int(a.values[i]) - Int(b.values[i]))
                n += 1
            }
            rowMeans.append(n > 0 ? Double(sum) / Double(n) : 0)
            total += Double(sum)
            counted += Double(n)
        }
        let mean = counted > 0 ? total / counted : 0
        if mean < threshold { return (mean, false) }
        let changed = rowMeans.indices.filter { rowMeans[$0] >= threshold }
        guard let first = changed.first, let last = changed.last, Double(last - first + 1) <= maxBandFraction * Double(a.rows) else { return (mean, false) }
        // Outside the band the pictures must be still.
        let outside = rowMeans.indices.filter { $0 < first || $0 > last }.map { rowMeans[$0] }
        let outsideMean = outside.isEmpty ? 0 : outside.reduce(0, +) / Double(outside.count)
        return outsideMean < threshold ? (outsideMean, true) : (mean, false)
    }
}
