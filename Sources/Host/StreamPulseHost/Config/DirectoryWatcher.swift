import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Something changed in a watched directory.
public struct WatchEvent: Sendable, Equatable {
    public var directory: String
    /// The entry's name inside the directory ("" for the directory itself).
    public var name: String
    public var mask: UInt32
    /// The kernel's queue overflowed: events were lost, re-read everything.
    public var overflow: Bool { mask & UInt32(IN_Q_OVERFLOW) != 0 }
}

/// Raw inotify on directories (never on files: a rename-save replaces the file and a watch on it dies).
/// Events seen on a directory watch: in-place saves give MODIFY/CLOSE_WRITE, rename-saves only MOVED_TO,
/// `git checkout` DELETE then CREATE, Kubernetes ConfigMaps MOVED_TO `..data`.
public final class DirectoryWatcher: Sendable {
    private let fd: Int32
    private let directories: [Int32: String]
    private let stopped = StopFlag()

    public init(directories: [String]) throws {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw WatcherError(message: "inotify_init1 failed: \(String(cString: strerror(errno)))") }
        var map: [Int32: String] = [:]
        let mask = UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB)
        for directory in Set(directories) {
            let wd = inotify_add_watch(fd, directory, mask)
            guard wd >= 0 else { close(fd); throw WatcherError(message: "cannot watch \(directory): \(String(cString: strerror(errno)))") }
            map[wd] = directory
        }
        self.directories = map
    }

    deinit { close(fd) }

    public struct WatcherError: Error, CustomStringConvertible { public var message: String; public var description: String { message } }

    /// Batches of events, read on a thread of their own and debounced: a batch is delivered once
    /// `quiet` has passed without a new event (20 writes in a burst make one batch), or only `settle` when
    /// its last event says a file is complete (CLOSE_WRITE: the writer closed it; MOVED_TO: a rename-save
    /// put a whole file in place), so a finished save is acted on sooner than one still being written.
    /// Ends after `stop()`.
    public func batches(quiet: Duration = .milliseconds(150), settle: Duration = .milliseconds(50)) -> AsyncStream<[WatchEvent]> {
        let quietMs = Int32(max(1, quiet.milliseconds))
        let settleMs = Int32(max(1, min(settle, quiet).milliseconds))
        let complete = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO)
        return AsyncStream { continuation in
            let thread = Thread { [self] in
                var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                var batch: [WatchEvent] = []
                while !stopped.isSet {
                    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    let wait = batch.isEmpty ? 200 : (batch[batch.count - 1].mask & complete != 0 ? settleMs : quietMs)
                    let ready = poll(&pfd, 1, wait)
                    if ready <= 0 {
                        if !batch.isEmpty { continuation.yield(batch); batch = [] }
                        continue
                    }
                    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    guard count > 0 else { continue }
                    var offset = 0
                    // struct inotify_event { int wd; uint32 mask; uint32 cookie; uint32 len; char name[len]; }
                    // Swift's Glibc import has no `name` member, so the record is read by hand.
                    while offset + 16 <= count {
                        let wd = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: Int32.self) }
                        let mask = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self) }
                        let length = Int(buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) })
                        let nameBytes = buffer[(offset + 16)..<min(count, offset + 16 + length)].prefix { $0 != 0 }
                        batch.append(WatchEvent(directory: directories[wd] ?? "", name: String(decoding: nameBytes, as: UTF8.self), mask: mask))
                        offset += 16 + length
                    }
                }
                continuation.finish()
            }
            thread.name = "inotify"
            thread.start()
            continuation.onTermination = { [self] _ in stopped.set() }
        }
    }

    public func stop() { stopped.set() }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
