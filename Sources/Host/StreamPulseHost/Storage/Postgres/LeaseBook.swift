import Foundation
import Synchronization

/// Which leases this agent held, and when (issue #17). A result is written under the lease that was held when
/// it was probed — not the one held when the sink gets to it — so results buffered across a takeover and a
/// later claim back are still refused: the stream's history then has another agent's results for that time.
public final class LeaseBook: Sendable {
    struct Holding: Sendable {
        var generation: Int64
        var from: Date
        var until: Date?
    }

    private let state = Mutex<[String: [Holding]]>([:])
    /// The clock results are stamped with (the engine's).
    private let clock: @Sendable () -> Date
    /// Holdings kept per stream (older ones are forgotten: results that old were written or refused long ago).
    private let keep = 8

    public init(clock: @escaping @Sendable () -> Date = { Date() }) {
        self.clock = clock
    }

    /// Records what the agent holds from now on: new leases open a holding, leases gone close theirs.
    public func update(_ held: Set<StreamLease>) {
        let now = clock()
        let byStream = Dictionary(held.map { ($0.streamID, $0.generation) }, uniquingKeysWith: max)
        state.withLock { book in
            for (id, holdings) in book {
                guard let last = holdings.last, last.until == nil else { continue }
                if byStream[id] != last.generation { book[id]![holdings.count - 1].until = now }
            }
            for (id, generation) in byStream {
                var holdings = book[id] ?? []
                if let last = holdings.last, last.until == nil, last.generation == generation { continue }
                holdings.append(Holding(generation: generation, from: now))
                if holdings.count > keep { holdings.removeFirst(holdings.count - keep) }
                book[id] = holdings
            }
        }
    }

    /// The lease under which a result of `stream` stamped `at` was probed; nil when none was held then.
    public func lease(of stream: String, at: Date) -> StreamLease? {
        state.withLock { book in
            guard let holdings = book[stream] else { return nil }
            for holding in holdings.reversed() where holding.from <= at && (holding.until.map { at <= $0 } ?? true) {
                return StreamLease(streamID: stream, generation: holding.generation)
            }
            return nil
        }
    }

    /// The leases held now.
    public var current: Set<StreamLease> {
        state.withLock { book in
            Set(book.compactMap { id, holdings in
                holdings.last.flatMap { $0.until == nil ? StreamLease(streamID: id, generation: $0.generation) : nil }
            })
        }
    }
}
