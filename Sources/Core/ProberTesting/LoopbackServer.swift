#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// A tiny real TCP server on 127.0.0.1 for a prober's tests: each connection's request head is read and
/// answered as `reply` decides. For what no real camera server does on demand (a silent camera, a cut-off
/// frame, a wrong status) — prefer a real server where one exists.
///
/// ```swift
/// let server = try LoopbackServer { _ in .bytes(Array("HTTP/1.1 404 Not Found\r\n\r\n".utf8)) }
/// defer { server.stop() }
/// // probe 127.0.0.1:\(server.port)
/// ```
public final class LoopbackServer: Sendable {
    /// How to answer one connection.
    public enum Reply: Sendable {
        /// Write these bytes, then close.
        case bytes([UInt8])
        /// Accept, read, and never answer (the connection stays open until `stop()`).
        case silence
        /// Close at once without a byte.
        case close
    }

    public enum SetupError: Error { case socket(Int32) }

    /// The port the server listens on.
    public let port: Int
    private let listener: Int32
    private let state = Mutex<(requests: [String], open: [Int32], stopped: Bool)>(([], [], false))

    /// Listens on 127.0.0.1 at a free port and answers on a thread of its own.
    public init(reply: @escaping @Sendable (_ requestHead: String) -> Reply) throws {
        let (fd, port) = try Self.bindLoopback()
        guard listen(fd, 64) == 0 else { let code = errno; close(fd); throw SetupError.socket(code) }
        listener = fd
        self.port = port
        let thread = Thread { [self] in acceptLoop(reply: reply) }
        thread.name = "loopback-server"
        thread.start()
    }

    /// Runs `body` with a 127.0.0.1 port that refuses connections: it is bound (so no other socket takes it
    /// meanwhile) but not listening, so a connect gets a reset — a camera with nothing on that port.
    public static func withRefusingPort<T>(_ body: (Int) async throws -> T) async throws -> T {
        let (fd, port) = try bindLoopback()
        defer { close(fd) }
        return try await body(port)
    }

    /// A TCP socket bound to 127.0.0.1 at a free port, and that port.
    private static func bindLoopback() throws -> (Int32, Int) {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw SetupError.socket(errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { let code = errno; close(fd); throw SetupError.socket(code) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// The request heads received so far, in order.
    public var requests: [String] { state.withLock { $0.requests } }

    /// Stops listening and closes every connection still open.
    public func stop() {
        // Only the first call closes anything: a second close could hit a descriptor number reused since.
        let open = state.withLock { state -> [Int32]? in
            guard !state.stopped else { return nil }
            state.stopped = true
            defer { state.open = [] }
            return state.open
        }
        guard let open else { return }
        // Shut down, not closed: the accept thread closes the listener itself when it sees this, so its
        // descriptor number cannot be reused (by another test's socket) while that thread may still use it.
        shutdown(listener, Int32(SHUT_RDWR))
        for fd in open { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
    }

    deinit { stop() }

    private func acceptLoop(reply: @Sendable (String) -> Reply) {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else {
                if errno == EINTR { continue }
                close(listener)  // stopped (or broken): nothing else touches the listener after this
                return
            }
            let head = readHead(fd)
            let stopped = state.withLock { state -> Bool in
                state.requests.append(head)
                return state.stopped
            }
            if stopped { close(fd); continue }  // the next accept fails and closes the listener
            switch reply(head) {
            case .bytes(let bytes):
                var sent = 0
                while sent < bytes.count {
                    let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break }
                    sent += n
                }
                close(fd)
            case .silence:
                state.withLock { $0.open.append(fd) }
            case .close:
                close(fd)
            }
        }
    }

    /// Reads up to the blank line ending a request head (at most 64 KiB).
    private func readHead(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            bytes += chunk[..<n]
            if let end = bytes.firstRange(of: [13, 10, 13, 10]) { bytes = Array(bytes[..<end.lowerBound]) + [13, 10, 13, 10]; break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
