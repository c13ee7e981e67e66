import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Clock synchronisation as measured by SNTP (RFC 4330).
public struct TimeSync: Sendable, Codable, Equatable {
    public var synced: Bool
    /// Seconds to add to the local clock to get the server's time.
    public var offsetSeconds: Double?
    /// Round-trip delay of the measurement, in seconds.
    public var delaySeconds: Double?
    public var stratum: Int?
    public var server: String?
    public var lastSync: Date?
    public var lastAttempt: Date?
    public var error: String?
    /// Where the state comes from: "sntp" (measured against `server`) or "kernel" (no server configured:
    /// the kernel's own synchronisation state, kept by the machine's NTP daemon, read with adjtimex).
    public var source: String? = "sntp"
    /// The kernel's estimated and maximum clock error, in seconds (source "kernel" only).
    public var estimatedErrorSeconds: Double?
    public var maximumErrorSeconds: Double?

    public static func unsynced(reason: String) -> TimeSync {
        TimeSync(synced: false, offsetSeconds: nil, delaySeconds: nil, stratum: nil, server: nil, lastSync: nil, lastAttempt: Date(), error: reason)
    }
}

/// glibc's adjtimex (declared in <sys/timex.h>, which the Glibc module does not export).
@_silgen_name("adjtimex") func glibcAdjtimex(_ buffer: UnsafeMutableRawPointer) -> Int32

/// The kernel's clock discipline as `adjtimex(2)` reports it (read-only: `modes` 0), for a machine whose
/// clock is kept by chrony, ntpd or systemd-timesyncd while StreamPulse has no NTP server of its own.
public enum KernelClock {
    /// `adjtimex`'s answer: the return value (TIME_ERROR, 5, when unsynchronised) and the fields read.
    public struct Reading: Sendable, Equatable {
        public var state: Int32
        public var status: Int32
        /// Estimated and maximum error, in microseconds.
        public var esterror: Int
        public var maxerror: Int
        public init(state: Int32, status: Int32, esterror: Int, maxerror: Int) {
            self.state = state; self.status = status; self.esterror = esterror; self.maxerror = maxerror
        }
    }

    /// STA_UNSYNC: the kernel's "clock not synchronised" status bit; TIME_ERROR: adjtimex's answer then.
    static let unsyncBit: Int32 = 0x0040
    static let timeError: Int32 = 5

    /// Reads the kernel's state now. `struct timex` (<sys/timex.h>, which the Glibc module does not export)
    /// is read from a zeroed buffer at its LP64 offsets: modes 0 (read only), maxerror 24, esterror 32, status 40.
    public static func read() -> Reading? {
        var buffer = [UInt8](repeating: 0, count: 512)
        return buffer.withUnsafeMutableBytes { raw -> Reading? in
            guard let base = raw.baseAddress else { return nil }
            let state = glibcAdjtimex(base)
            guard state >= 0 else { return nil }
            return Reading(state: state, status: raw.load(fromByteOffset: 40, as: Int32.self),
                           esterror: raw.load(fromByteOffset: 32, as: Int.self), maxerror: raw.load(fromByteOffset: 24, as: Int.self))
        }
    }

    /// The reading as the dashboard's clock pill shows it.
    public static func sync(from reading: Reading?, at now: Date = Date()) -> TimeSync {
        guard let reading else {
            var state = TimeSync.unsynced(reason: "no NTP servers configured, and the kernel's clock state cannot be read")
            state.source = "kernel"
            return state
        }
        let synced = reading.state != timeError && reading.status & unsyncBit == 0
        var state = TimeSync(synced: synced, offsetSeconds: nil, delaySeconds: nil, stratum: nil,
                             server: nil, lastSync: synced ? now : nil, lastAttempt: now,
                             error: synced ? nil : "no NTP servers configured, and the kernel says the clock is not synchronised (no NTP daemon keeps it)")
        state.source = "kernel"
        if synced {
            state.estimatedErrorSeconds = Double(reading.esterror) / 1e6
            state.maximumErrorSeconds = Double(reading.maxerror) / 1e6
        }
        return state
    }
}

/// A minimal SNTP client: one request, one answer, bounded by a timeout. Blocking; run it off the probe path.
public enum SNTPClient {
    public struct Failure: Error, CustomStringConvertible { public var description: String }

    /// Seconds between 1900-01-01 (NTP era 0) and 1970-01-01.
    static let unixEpochOffset = 2_208_988_800.0

    /// Queries `server` (`host` or `host:port`, default port 123).
    public static func query(_ server: String, timeout: Double = 2) throws -> TimeSync {
        var host = server
        var port = "123"
        if let colon = server.lastIndex(of: ":"), !server.hasSuffix("]") {
            host = String(server[..<colon])
            port = String(server[server.index(after: colon)...])
        }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, port, &hints, &list) == 0, let address = list else { throw Failure(description: "cannot resolve \(host)") }
        defer { freeaddrinfo(list) }
        let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 else {
            throw Failure(description: "connect: \(String(cString: strerror(errno)))")
        }
        // LI 0, version 4, mode 3 (client); transmit timestamp = our send time (echoed as originate).
        var packet = [UInt8](repeating: 0, count: 48)
        packet[0] = 0x23
        let t1 = Date().timeIntervalSince1970
        write(timestamp: t1, into: &packet, at: 40)
        guard send(fd, packet, 48, 0) == 48 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
        var answer = [UInt8](repeating: 0, count: 68)
        let count = recv(fd, &answer, answer.count, 0)
        let t4 = Date().timeIntervalSince1970
        guard count >= 48 else { throw Failure(description: count < 0 ? "no answer from \(server) within \(timeout) s" : "short answer") }
        let mode = answer[0] & 0x07
        let stratum = Int(answer[1])
        guard mode == 4 || mode == 5 else { throw Failure(description: "not a server answer (mode \(mode))") }
        guard stratum > 0 && stratum < 16 else { throw Failure(description: "server is unsynchronised (stratum \(stratum))") }
        let t2 = read(answer, at: 32), t3 = read(answer, at: 40)
        let offset = ((t2 - t1) + (t3 - t4)) / 2
        let delay = (t4 - t1) - (t3 - t2)
        return TimeSync(synced: true, offsetSeconds: offset, delaySeconds: delay, stratum: stratum, server: server,
                        lastSync: Date(), lastAttempt: Date(), error: nil)
    }

    static func write(timestamp: Double, into packet: inout [UInt8], at offset: Int) {
        let ntp = timestamp + unixEpochOffset
        let seconds = UInt32(truncatingIfNeeded: UInt64(ntp))
        let fraction = UInt32(truncatingIfNeeded: UInt64((ntp - Double(UInt64(ntp))) * 4_294_967_296))
        for i in 0..<4 {
            packet[offset + i] = UInt8(truncatingIfNeeded: seconds >> (24 - 8 * i))
            packet[offset + 4 + i] = UInt8(truncatingIfNeeded: fraction >> (24 - 8 * i))
        }
    }

    static func read(_ packet: [UInt8], at offset: Int) -> Double {
        var seconds: UInt32 = 0, fraction: UInt32 = 0
        for i in 0..<4 {
            seconds = seconds << 8 | UInt32(packet[offset + i])
            fraction = fraction << 8 | UInt32(packet[offset + 4 + i])
        }
        return Double(seconds) - unixEpochOffset + Double(fraction) / 4_294_967_296
    }
}

/// The measured clock offset, shared with the engine so recorded timestamps are corrected.
public final class ClockOffset: Sendable {
    private let seconds = Mutex<Double>(0)
    public init() {}
    public func set(_ value: Double) { seconds.withLock { $0 = value } }
    public var offset: Double { seconds.withLock { $0 } }
    /// Now, corrected by the last measured offset (uncorrected while unsynced).
    public func now() -> Date { Date().addingTimeInterval(offset) }
}

/// Measures the clock offset every `interval` in the background, never on the probe path. An
/// unreachable server makes the state "unsynced" and changes nothing else.
public actor TimeService {
    public let servers: [String]
    public let interval: Duration
    private let logger: Logger
    public private(set) var current: TimeSync

    public let offset: ClockOffset

    public init(servers: [String], interval: Duration, logger: Logger, offset: ClockOffset = ClockOffset()) {
        self.offset = offset
        self.servers = servers
        self.interval = interval
        self.logger = logger
        current = .unsynced(reason: "not measured yet")
    }

    /// One measurement round: the first server that answers wins.
    @discardableResult
    public func measure() async -> TimeSync {
        var errors: [String] = []
        for server in servers {
            let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<TimeSync, SNTPClient.Failure>, Never>) in
                Thread { continuation.resume(returning: Result { try SNTPClient.query(server) }.mapError { $0 as? SNTPClient.Failure ?? SNTPClient.Failure(description: "\($0)") }) }.start()
            }
            switch outcome {
            case .success(let sync):
                if !current.synced { logger.notice("NTP synced with \(server): offset \(String(format: "%.3f", sync.offsetSeconds ?? 0)) s, stratum \(sync.stratum ?? 0)") }
                current = sync
                offset.set(sync.offsetSeconds ?? 0)
                return sync
            case .failure(let failure):
                errors.append("\(server): \(failure.description)")
            }
        }
        if current.synced || current.error == "not measured yet" { logger.warning("NTP unsynced: \(errors.joined(separator: "; "))") }
        var unsynced = TimeSync.unsynced(reason: errors.joined(separator: "; "))
        unsynced.lastSync = current.lastSync
        current = unsynced
        return unsynced
    }

    public func run() async {
        while !Task.isCancelled {
            await measure()
            try? await Task.sleep(for: interval)
        }
    }
}
