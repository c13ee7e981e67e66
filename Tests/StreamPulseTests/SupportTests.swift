import CFFmpeg
import Foundation
import ProberSupport
import StreamPulseCore
import Testing

/// Reads a JPEG's size with the prober's own inspector.
enum JPEGInfoProbe {
    static func size(of data: Data) throws -> JPEGInfo { try JPEGInfo.inspect([UInt8](data)) }
}

/// Pure parsers shared by the probers: response heads, auth, multipart, JPEG markers, picture verdicts.
@Suite struct SupportTests {
    @Test func responseHead_parsesCRLFAndBareLF() async throws {
        for eol in ["\r\n", "\n"] {
            let text = ["RTSP/1.0 401 Unauthorized", "CSeq: 2", "WWW-Authenticate: Basic realm=\"a\"", "WWW-Authenticate: Digest realm=\"a\", nonce=\"n\"", "", ""].joined(separator: eol)
            let bytes = Array(text.utf8)
            let end = try #require(ResponseHead.endOfHead(in: bytes))
            #expect(end == bytes.count)
            let head = try ResponseHead.parse(bytes[..<end], protocols: ["RTSP/"])
            #expect(head.status == 401)
            #expect(head.reasonPhrase == "Unauthorized")
            #expect(head.header("cseq") == "2")
            #expect(head.headers("WWW-Authenticate").count == 2)
        }
        #expect(throws: ResponseHead.ParseError.self) { try ResponseHead.parse(Array("SSH-2.0-x\r\n\r\n".utf8)[...], protocols: ["RTSP/"]) }
    }

    /// RFC 2617 section 3.5's worked example.
    @Test func digest_matchesTheRFCExample() async throws {
        let challenge = try #require(AuthChallenge.parse(#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#))
        let header = challenge.authorization(method: "GET", uri: "/dir/index.html", credentials: Credentials(username: "Mufasa", password: "Circle Of Life"), nonceCount: 1, cnonce: "0a4f113b")
        #expect(header.contains(#"response="6629fae49393a05397450978507c4ef1""#))
        #expect(header.contains(#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#))
    }

    @Test func authChallenge_prefersDigest_andBuildsBasic() async throws {
        let best = try #require(AuthChallenge.best(from: [#"Basic realm="x""#, #"Digest realm="x", nonce="1""#]))
        #expect(best.scheme == .digest)
        let basic = try #require(AuthChallenge.parse(#"Basic realm="cam""#))
        #expect(basic.authorization(method: "GET", uri: "/", credentials: Credentials(username: "Aladdin", password: "open sesame")) == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    }

    static let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9]

    /// Thumbnails through kept encoders (`JPEGEncoder.encodeOnce`): pictures of other sizes, pixel formats and
    /// width limits, one after another, each come out at its own size and brightness, as a new encoder makes them.
    @Test func keptThumbnailEncoders_serveEachPictureAsANewOneWould() throws {
        let pictures: [(Int32, Int32, AVPixelFormat, Int, UInt8)] = [
            (1920, 1080, AV_PIX_FMT_YUV420P, 320, 200), (640, 480, AV_PIX_FMT_YUV420P, 320, 40), (1920, 1080, AV_PIX_FMT_YUV420P, 160, 120),
            (1280, 720, AV_PIX_FMT_YUV422P, 320, 90), (1920, 1080, AV_PIX_FMT_YUV420P, 320, 60), (200, 100, AV_PIX_FMT_YUVJ420P, 320, 180),
        ]
        let decoder = JPEGDecoder()
        for (width, height, format, maxWidth, luma) in pictures {
            var frame = av_frame_alloc()
            defer { av_frame_free(&frame) }
            let picture = try #require(frame)
            picture.pointee.width = width
            picture.pointee.height = height
            picture.pointee.format = format.rawValue
            #expect(av_frame_get_buffer(picture, 0) >= 0)
            let chromaRows = format == AV_PIX_FMT_YUV422P ? Int(height) : Int(height) / 2
            memset(try #require(picture.pointee.data.0), Int32(luma), Int(picture.pointee.linesize.0) * Int(height))
            memset(try #require(picture.pointee.data.1), 128, Int(picture.pointee.linesize.1) * chromaRows)
            memset(try #require(picture.pointee.data.2), 128, Int(picture.pointee.linesize.2) * chromaRows)
            let jpeg = [UInt8](try #require(JPEGEncoder.encodeOnce(picture, maxWidth: maxWidth)))
            let expected = JPEGEncoder(maxWidth: maxWidth).encode(picture).map { [UInt8]($0) }
            let info = try JPEGInfo.inspect(jpeg)
            let wide = min(Int(width), maxWidth) & ~1
            #expect(info.width == wide && info.height == (Int(height) * wide / Int(width)) & ~1, "\(width)x\(height) to \(maxWidth)")
            #expect(jpeg == expected, "\(width)x\(height) to \(maxWidth): the kept encoder's JPEG differs from a new encoder's")
            // A JPEG is full range: limited-range luma (16-235) comes out stretched.
            let full = format == AV_PIX_FMT_YUVJ420P ? Double(luma) : (Double(luma) - 16) * 255 / 219
            let mean = try #require(decoder.sample(jpeg)).mean
            #expect(abs(mean - full) < 3, "\(width)x\(height): mean luma \(mean), \(full) expected")
        }
    }

    @Test func jpegInfo_readsSizeFromSOF_andRejectsBrokenFrames() async throws {
        let info = try JPEGInfo.inspect(Self.jpeg)
        #expect(info.width == 640 && info.height == 480)
        #expect(throws: JPEGInfo.Problem.noEndMarker) { try JPEGInfo.inspect(Self.jpeg.dropLast(2)) }
        #expect(throws: JPEGInfo.Problem.noStartMarker) { try JPEGInfo.inspect([0x47, 0x49, 0x46, 0x38] + Self.jpeg) }
        var bad = Self.jpeg
        bad[5] = 0xFF  // segment length beyond the frame
        #expect(throws: JPEGInfo.Problem.self) { try JPEGInfo.inspect(bad) }
    }

    func stream(boundary: String, eol: String, withLength: Bool, frames: Int) -> [UInt8] {
        var out: [UInt8] = Array("preamble\(eol)".utf8)
        for _ in 0..<frames {
            out += Array("--\(boundary)\(eol)Content-Type: image/jpeg\(eol)".utf8)
            if withLength { out += Array("Content-Length: \(Self.jpeg.count)\(eol)".utf8) }
            out += Array(eol.utf8) + Self.jpeg + Array(eol.utf8)
        }
        return out
    }

    @Test(arguments: [("frame", "\r\n", true), ("frame", "\r\n", false), ("frame", "\n", false), ("frame", "\n", true)])
    func multipart_splitsFrames_inAnyChunking(boundary: String, eol: String, withLength: Bool) async throws {
        let bytes = stream(boundary: boundary, eol: eol, withLength: withLength, frames: 5)
        for chunk in [1, 7, 64, bytes.count] {
            for header in [boundary, "--\(boundary)", "\"\(boundary)\"", "\"--\(boundary)\""] {
                var reader = MultipartReader(boundary: header, maxPartBytes: 1 << 20)
                var parts: [MultipartReader.Part] = []
                var index = 0
                while index < bytes.count {
                    parts += try reader.feed(bytes[index..<min(bytes.count, index + chunk)])
                    index += chunk
                }
                // Without Content-Length the last part ends only when the next boundary arrives.
                #expect(parts.count == (withLength ? 5 : 4), "chunk \(chunk) header \(header)")
                #expect(parts.allSatisfy { $0.body == Self.jpeg })
            }
        }
    }

    /// VLC's first part declares a wrong Content-Length: too short cuts the JPEG, too long runs into the
    /// next part. Either way the part is resynchronised on the next delimiter and every frame is whole.
    @Test(arguments: [-20, -1, 1, 37, 300])
    func multipart_aWrongContentLength_isResynchronisedAtTheNextDelimiter(error: Int) throws {
        var bytes: [UInt8] = []
        for index in 0..<8 {
            let declared = index == 0 ? Self.jpeg.count + error : Self.jpeg.count
            bytes += Array("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: \(declared)\r\n\r\n".utf8) + Self.jpeg + Array("\r\n".utf8)
        }
        bytes += Array("--frame\r\n".utf8)
        for chunk in [1, 13, bytes.count] {
            var reader = MultipartReader(boundary: "frame", maxPartBytes: 1 << 20)
            var parts: [MultipartReader.Part] = []
            var index = 0
            while index < bytes.count {
                parts += try reader.feed(bytes[index..<min(bytes.count, index + chunk)])
                index += chunk
            }
            #expect(parts.count == 8, "error \(error), chunk \(chunk)")
            // A length one or two over takes the line break after the JPEG with it: still the whole picture.
            let whole = parts.allSatisfy { $0.body.starts(with: Self.jpeg) && $0.body.dropFirst(Self.jpeg.count).allSatisfy { $0 == 0x0D || $0 == 0x0A } }
            #expect(whole, "error \(error), chunk \(chunk): \(parts.map(\.body.count))")
        }
    }

    /// A chunked body (ffmpeg's mpjpeg server) decodes to the same bytes whatever the chunk sizes and however
    /// the input is split; extensions and trailers are ignored; bad size lines fail, bounded.
    @Test func chunkedBodies_decode_inAnySplit_andBadOnesFail() throws {
        let payload = Array((0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) })
        var encoded: [UInt8] = []
        var offset = 0
        for size in [1, 16, 255, 4096, 632] {
            encoded += Array("\(String(size, radix: 16))\(size == 16 ? ";ext=1" : "")\r\n".utf8) + payload[offset..<offset + size] + Array("\r\n".utf8)
            offset += size
        }
        encoded += Array("0\r\nX-Trailer: yes\r\n\r\n".utf8)
        for split in [1, 2, 3, 100, encoded.count] {
            var decoder = ChunkedDecoder()
            var output: [UInt8] = []
            var index = 0
            while index < encoded.count {
                output += try decoder.feed(encoded[index..<min(encoded.count, index + split)])
                index += split
            }
            #expect(output == payload, "split \(split)")
            #expect(decoder.finished)
        }
        for bad in ["zz\r\n", "\r\n", "1234567890abcdef0\r\n", String(repeating: "1", count: 2000)] {
            var decoder = ChunkedDecoder()
            #expect(throws: ChunkedDecoder.Failure.badChunkSize, "\(bad.prefix(20))") { _ = try decoder.feed(Array(bad.utf8)) }
        }
        var decoder = ChunkedDecoder()
        #expect(throws: ChunkedDecoder.Failure.missingChunkEnd) { _ = try decoder.feed(Array("2\r\nabXY".utf8)) }
    }

    @Test func multipart_boundaryParameter_isFoundInContentType() {
        #expect(MultipartReader.boundary(fromContentType: "multipart/x-mixed-replace; boundary=--myboundary") == "--myboundary")
        #expect(MultipartReader.boundary(fromContentType: #"multipart/x-mixed-replace;boundary="abc""#) == #""abc""#)
        #expect(MultipartReader.boundary(fromContentType: "multipart/x-mixed-replace") == nil)
    }

    @Test func multipart_isBounded_againstHostileStreams() async throws {
        var garbage = MultipartReader(boundary: "frame", maxPartBytes: 10_000)
        #expect(throws: MultipartReader.Failure.self) {
            for _ in 0..<100 { _ = try garbage.feed([UInt8](repeating: 0x41, count: 1000)) }
        }
        var huge = MultipartReader(boundary: "frame", maxPartBytes: 10_000)
        #expect(throws: MultipartReader.Failure.partTooLarge(1_000_000)) {
            _ = try huge.feed(Array("--frame\r\nContent-Length: 1000000\r\n\r\n".utf8))
        }
        var endless = MultipartReader(boundary: "frame", maxPartBytes: 10_000, maxHeaderBytes: 1024)
        #expect(throws: MultipartReader.Failure.headersTooLarge) {
            _ = try endless.feed(Array("--frame\r\n".utf8) + [UInt8](repeating: 0x61, count: 5000))
        }
    }

    @Test func pictureVerdict_blackAtBothRanges_frozenOnlyWhenEveryPairIsStill() {
        let limitedBlack = LumaSample(values: [UInt8](repeating: 16, count: 100), columns: 10, rows: 10)
        let fullBlack = LumaSample(values: [UInt8](repeating: 0, count: 100), columns: 10, rows: 10)
        let scene = LumaSample(values: (0..<100).map { UInt8($0 * 2) }, columns: 10, rows: 10)
        var moved = scene
        moved.values[0] = 255; moved.values[50] = 0; moved.values.swapAt(10, 90)
        #expect(PictureVerdict(samples: [limitedBlack], blackThreshold: nil, frozenThreshold: nil).black)
        #expect(PictureVerdict(samples: [fullBlack], blackThreshold: nil, frozenThreshold: nil).black)
        #expect(!PictureVerdict(samples: [scene], blackThreshold: nil, frozenThreshold: nil).black)
        #expect(PictureVerdict(samples: [scene, scene, scene], blackThreshold: nil, frozenThreshold: nil).frozen)
        #expect(!PictureVerdict(samples: [scene, moved, scene], blackThreshold: nil, frozenThreshold: nil).frozen)
        #expect(!PictureVerdict(samples: [scene], blackThreshold: nil, frozenThreshold: nil).frozen)
    }
}
