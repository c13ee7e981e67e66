// libFuzzer target for the MJPEG plugin's parsers: multipart reader, JPEG marker inspector, response heads.
// Built and run by scripts/fuzz (not part of CI). The first input byte picks the chunk size, so the
// reader also sees every way of splitting the same stream.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let chunk = Int(first % 64) + 1
    let body = Array(bytes.dropFirst())

    var reader = MultipartReader(boundary: first & 1 == 0 ? "frame" : "\"--frame\"", maxPartBytes: 4096, maxHeaderBytes: 512)
    var index = 0
    var total = 0
    do {
        while index < body.count {
            let parts = try reader.feed(body[index..<min(body.count, index + chunk)])
            for part in parts {
                total += part.body.count
                precondition(part.body.count <= 4096, "a part larger than the limit escaped")
                _ = try? JPEGInfo.inspect(part.body)
            }
            index += chunk
        }
    } catch {}
    _ = total
    _ = try? JPEGInfo.inspect(body)
    if let end = ResponseHead.endOfHead(in: body) { _ = try? ResponseHead.parse(body[..<end], protocols: ["HTTP/", "RTSP/"]) }
    _ = MultipartReader.boundary(fromContentType: String(decoding: body.prefix(200), as: UTF8.self))
    return 0
}
