import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP connection whose every operation is bounded by a `ProbeClock`. Run it on a
/// `BlockingPool` thread. Used by probers that speak text protocols (RTSP quick probe, HTTP).
public final class TCPConnection {
    public enum Failure: Error, Equatable {
        case resolve(String)
        case refused
        case unreachable(String)
        case timedOut
        case cancelled
        case closed
        case io(String)
        /// The monitor's own resources ran out (no file descriptor, no buffer memory): not the camera's fault.
        case exhausted(String)
    }

    private var fd: Int32
    private var clock: ProbeClock

    /// Connects to `host:port`, giving up at the clock's deadline. `host` is a name, an IPv4 address or an IPv6
    /// address with or without the brackets a URL writes around it (`[::1]`, as `URLComponents.host` gives it).
    public init(host: String, port: Int, clock: ProbeClock) throws(Failure) {
        self.clock = clock
        let host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else { throw .resolve(String(cString: gai_strerror(status))) }
        defer { freeaddrinfo(list) }
        fd = socket(first.pointee.ai_family, first.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Self.classify(errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 {
            guard errno == EINPROGRESS else { let e = errno; release(); throw Self.classify(e) }
            do { try wait(for: Int16(POLLOUT)) } catch { release(); throw error }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            if error != 0 { release(); throw Self.classify(error) }
        }
    }

    // A throwing initializer of a fully initialized class still runs deinit: the descriptor is closed
    // exactly once (closing it twice would close whatever another thread opened under that number meanwhile —
    // another camera's socket, the database).
    deinit { release() }

    private func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// Bounds the following operations by a new clock (for connections that outlive one probe).
    public func setDeadline(_ clock: ProbeClock) {
        self.clock = clock
    }

    private static func classify(_ code: Int32) -> Failure {
        switch code {
        case ECONNREFUSED: .refused
        case ETIMEDOUT: .timedOut
        case EHOSTUNREACH, ENETUNREACH: .unreachable(String(cString: strerror(code)))
        case EMFILE, ENFILE, ENOBUFS, ENOMEM: .exhausted(String(cString: strerror(code)))
        default: .io(String(cString: strerror(code)))
        }
    }

    /// Waits until the socket is ready, polling in short slices so cancellation is seen promptly.
    private func wait(for events: Int16) throws(Failure) {
        while true {
            if clock.isCancelled { throw .cancelled }
            let remaining = clock.remainingMs
            if remaining <= 0 { throw .timedOut }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&pfd, 1, Int32(min(remaining, 100).rounded(.up)))
            if result > 0 { return }
            if result < 0 && errno != EINTR { throw .io(String(cString: strerror(errno))) }
        }
    }

    /// Sends all of `bytes`.
    public func write(_ bytes: [UInt8]) throws(Failure) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { try wait(for: Int16(POLLOUT)); continue }
            throw n == 0 ? .closed : Self.classify(errno)
        }
    }

    /// Reads into `buffer` as many bytes as have arrived (at least one, waiting for it); returns how many.
    /// Throws `.closed` at end of stream. For readers that keep their own buffer (no copy, no allocation).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Failure) -> Int {
        while true {
            let n = try readAvailable(into: buffer)
            if n > 0 { return n }
            try wait(for: Int16(POLLIN))
        }
    }

    /// Reads into `buffer` the bytes that have already arrived, without waiting: 0 when none have. Throws
    /// `.closed` at end of stream. Lets a reader that is caught up with a live stream sleep while packets
    /// gather, instead of being woken for each one.
    public func readAvailable(into buffer: UnsafeMutableRawBufferPointer) throws(Failure) -> Int {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n > 0 { return n }
            if n == 0 { throw .closed }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return 0 }
            throw Self.classify(errno)
        }
    }

    /// Reads up to `maximum` bytes as soon as any arrive; throws `.closed` at end of stream.
    public func read(maximum: Int) throws(Failure) -> [UInt8] {
        // Received into scratch memory that is not zero-filled first, then copied at its real size: zeroing
        // 64 KiB for every read made whole pages resident that then sat free in the allocator's arenas
        // (tens of MB at the peak of a 10,000-stream first round).
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, maximum), alignment: 16)
        defer { scratch.deallocate() }
        while true {
            let n = recv(fd, scratch.baseAddress, maximum, 0)
            if n > 0 { return Array(scratch[..<n]) }
            if n == 0 { throw .closed }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { try wait(for: Int16(POLLIN)); continue }
            throw Self.classify(errno)
        }
    }
}
