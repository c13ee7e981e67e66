import Foundation
import Synchronization

/// Why an operation on PostgreSQL was given up.
public struct PostgresDeadline: Error, CustomStringConvertible {
    public var description: String
}

/// Runs `operation`, giving up after `limit`: a link that drops packets (no reset), or a connection lost in
/// the middle of a transaction, can leave a query unanswered for minutes, and neither the lease rounds nor the
/// sink may wait that long. The operation itself is not stopped (it may still finish; its answer is then
/// PostgreSQL's truth), so callers make a retry harmless (the history's writes are idempotent).
func withDeadline<T: Sendable>(_ limit: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let task = Task { try await operation() }
    let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>, Never>) in
        let resumed = Mutex(false)
        let once: @Sendable (Result<T, any Error>) -> Void = { result in
            if resumed.withLock({ done in defer { done = true }; return !done }) { continuation.resume(returning: result) }
        }
        Task { once(await task.result) }
        Task {
            try? await Task.sleep(for: limit)
            once(.failure(PostgresDeadline(description: "PostgreSQL did not answer \(what) within \(limit)")))
        }
    }
    return try outcome.get()
}
