import StreamPulseCore

/// Colours and reasons as Core's reason table and the status model define them, for the dashboard's info modal.
public struct Legend: Encodable, Sendable {
    public struct Entry: Encodable, Sendable {
        public var key: String
        public var status: String
        public var meaning: String
    }
    public var statuses: [Entry]
    public var reasons: [Entry]

    public static var current: Legend {
        let statusMeanings: [(String, String, String)] = [
            ("ok", "ok", "Green: pictures decoded within the thresholds."),
            ("degraded", "degraded", "Yellow: the camera answers but the picture is unusable for a fixable reason (password, path, frozen, black, slow)."),
            ("pending", "pending", "Amber outline: failing, but not yet past the configured retries."),
            ("down", "down", "Red: unreachable or no pictures after the retries."),
            ("unknown", "unknown", "Grey: not checked yet, disabled, or no plugin for its scheme."),
            ("maintenance", "maintenance", "Blue: inside a maintenance window or silence; still probed (the verdict is shown beside it), nothing is notified and the time does not count against uptime."),
        ]
        return Legend(
            statuses: statusMeanings.map { Entry(key: $0.0, status: $0.1, meaning: $0.2) },
            reasons: Reason.table.sorted { $0.reason.rawValue < $1.reason.rawValue }.map { info in
                Entry(key: info.reason.rawValue, status: StatusModel.status(for: info.reason).rawValue, meaning: info.meaning)
            })
    }
}
