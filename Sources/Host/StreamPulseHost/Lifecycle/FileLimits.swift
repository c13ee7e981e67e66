import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// File descriptors are shared by web clients and camera probes: the web server gets a bounded share so a
/// crowd of clients can never starve the probes (which would turn healthy cameras red).
enum FileLimits {
    /// Descriptors kept for probes, plugins, the database and logs, whatever the web server does.
    static let reservedForProbing = 768

    /// Raises the soft limit on open files to the hard limit (systemd's default soft limit is 1024), then
    /// returns how many web connections fit beside the reserve — `wanted`, or fewer with a warning.
    static func webConnections(wanted: Int, logger: Logger) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return wanted }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = min(limit.rlim_max, 1 << 20)
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let available = Int(clamping: limit.rlim_cur) - reservedForProbing
        guard available < wanted else {
            logger.info("Web connections at most \(wanted) (open files limit \(limit.rlim_cur), \(reservedForProbing) kept for probing)")
            return wanted
        }
        let allowed = max(8, available / 2)
        logger.warning("The open files limit is \(limit.rlim_cur): web connections are capped at \(allowed) instead of \(wanted) so that probes keep \(reservedForProbing) descriptors. Raise LimitNOFILE (systemd) or ulimit -n.")
        return allowed
    }
}
