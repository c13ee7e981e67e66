import Foundation
import NIOCore
import Synchronization

/// Open web connections per client address, shared by every connection's `PerAddressLimitHandler`.
/// One address holding many idle or slow connections (slowloris) is refused beyond its share, so it cannot
/// take every slot under `web.max_connections` and starve other clients (and `/healthz`).
final class ConnectionsByAddress: Sendable {
    let limit: Int
    /// Addresses never limited (the trusted reverse proxies, which carry every user).
    let exempt: Set<String>
    private let counts = Mutex<[String: Int]>([:])

    init(limit: Int, exempt: [String]) {
        self.limit = max(1, limit)
        self.exempt = Set(exempt)
    }

    /// Counts a new connection from `address`; false (not counted) when the address is at its limit.
    func open(_ address: String) -> Bool {
        guard !exempt.contains(address) else { return true }
        return counts.withLock { counts in
            guard counts[address, default: 0] < limit else { return false }
            counts[address, default: 0] += 1
            return true
        }
    }

    func close(_ address: String) {
        guard !exempt.contains(address) else { return }
        counts.withLock { counts in
            counts[address, default: 1] -= 1
            if counts[address] == 0 { counts[address] = nil }
        }
    }

    func count(_ address: String) -> Int { counts.withLock { $0[address] ?? 0 } }
}

/// Closes a new connection at once when its address already holds its share (`ConnectionsByAddress`).
final class PerAddressLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any
    private let limits: ConnectionsByAddress
    private var counted: String?

    init(_ limits: ConnectionsByAddress) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if counted == nil { admit(context) }
        context.fireChannelActive()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard counted == nil else { return }
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if limits.open(address) { counted = address } else { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let counted { limits.close(counted) }
        counted = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let counted { limits.close(counted) }
        counted = nil
    }
}
