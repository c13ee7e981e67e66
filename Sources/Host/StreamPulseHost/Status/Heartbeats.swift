/// The last 30 outcomes per stream, one letter each (the dashboard's heartbeat bar):
/// o ok, d degraded, p pending, x down, u unknown.
public struct Heartbeats: Sendable {
    public static let length = 30
    private var rings: [String: [UInt8]] = [:]

    public init() {}

    public mutating func record(_ id: String, _ state: StreamState) {
        var ring = rings[id] ?? []
        if ring.count >= Self.length { ring.removeFirst(ring.count - (Self.length - 1)) }
        ring.append(Self.letter(state))
        rings[id] = ring
    }

    public mutating func forget(_ id: String) { rings[id] = nil }

    /// Oldest first; nil before the first check.
    public func recent(_ id: String) -> String? { rings[id].map { String(decoding: $0, as: UTF8.self) } }

    static func letter(_ state: StreamState) -> UInt8 {
        if state.pending { return UInt8(ascii: "p") }
        switch state.status {
        case .ok: return UInt8(ascii: "o")
        case .degraded: return UInt8(ascii: "d")
        case .down: return UInt8(ascii: "x")
        default: return UInt8(ascii: "u")
        }
    }
}
