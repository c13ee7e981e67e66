/// Facts read from a JPEG's markers without decoding it.
public struct JPEGInfo: Sendable, Equatable {
    public var width: Int
    public var height: Int

    public enum Problem: Error, Equatable, Sendable {
        /// Does not start with SOI (FF D8).
        case noStartMarker
        /// Does not end with EOI (FF D9): the frame was cut off.
        case noEndMarker
        /// A marker segment runs past the data or no SOF segment was found.
        case badSegments(String)
    }

    /// Checks SOI/EOI and reads the dimensions from the first SOF segment. Bounded by `bytes.count`.
    public static func inspect(_ bytes: some RandomAccessCollection<UInt8>) throws(Problem) -> JPEGInfo {
        let data = Array(bytes)
        guard data.count >= 4, data[0] == 0xFF, data[1] == 0xD8 else { throw .noStartMarker }
        // Some cameras pad after EOI; accept up to 16 trailing bytes of padding.
        var end = data.count
        while end > 2, data.count - end < 16, data[end - 1] != 0xD9 { end -= 1 }
        guard end >= 4, data[end - 2] == 0xFF, data[end - 1] == 0xD9 else { throw .noEndMarker }
        var index = 2
        while index + 4 <= end {
            guard data[index] == 0xFF else { throw .badSegments("expected a marker at byte \(index)") }
            let marker = data[index + 1]
            if marker == 0xFF { index += 1; continue }  // fill byte
            if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { index += 2; continue }
            if marker == 0xD9 || marker == 0xDA { break }  // EOI or start of scan before any SOF
            let length = Int(data[index + 2]) << 8 | Int(data[index + 3])
            guard length >= 2, index + 2 + length <= end else { throw .badSegments("segment FF\(String(marker, radix: 16, uppercase: true)) runs past the frame") }
            // SOF0…SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            if (0xC0...0xCF).contains(marker), marker != 0xC4, marker != 0xC8, marker != 0xCC {
                guard length >= 7 else { throw .badSegments("short SOF segment") }
                let height = Int(data[index + 5]) << 8 | Int(data[index + 6])
                let width = Int(data[index + 7]) << 8 | Int(data[index + 8])
                guard width > 0, height > 0 else { throw .badSegments("SOF gives a zero dimension") }
                return JPEGInfo(width: width, height: height)
            }
            index += 2 + length
        }
        throw .badSegments("no SOF segment before the image data")
    }
}
