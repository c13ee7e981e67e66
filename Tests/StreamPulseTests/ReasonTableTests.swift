import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// Core's reason table is the one source: every reason constant is in it, and the status model, the
/// legend and docs/status-model.md agree with it.
@Suite struct ReasonTableTests {
    /// The `Reason` constants declared in Core's source, as their wire names.
    static func declaredReasons() throws -> Set<String> {
        let source = try String(contentsOfFile: TestEnvironment.root + "/Sources/Core/SDK/Reason.swift", encoding: .utf8)
        let pattern = try NSRegularExpression(pattern: #"public static let \w+: Reason = "([a-z_]+)""#)
        return Set(pattern.matches(in: source, range: NSRange(source.startIndex..., in: source)).compactMap {
            Range($0.range(at: 1), in: source).map { String(source[$0]) }
        })
    }

    @Test func everyReasonConstant_isInTheTable_once() throws {
        let declared = try Self.declaredReasons()
        let table = Reason.table.map(\.reason.rawValue)
        #expect(declared.count >= 28)
        #expect(Set(table) == declared, "missing: \(declared.subtracting(table)); extra: \(Set(table).subtracting(declared))")
        #expect(table.count == Set(table).count, "a reason is declared twice")
    }

    @Test func theLegend_andTheStatusModel_followTheTable() {
        let legend = Legend.current
        for info in Reason.table {
            let entry = legend.reasons.first { $0.key == info.reason.rawValue }
            #expect(entry?.meaning == info.meaning, "\(info.reason)")
            #expect(entry?.status == info.reasonClass.rawValue, "\(info.reason)")
            #expect(StatusModel.status(for: info.reason).rawValue == info.reasonClass.rawValue)
        }
        #expect(legend.reasons.count == Reason.table.count)
        #expect(StatusModel.status(for: "a_reason_from_a_newer_plugin") == .down, "unknown reasons are never green or grey")
    }

    @Test func theStatusModelDoc_listsEveryReasonInItsColourRow() throws {
        let doc = try String(contentsOfFile: TestEnvironment.root + "/docs/status-model.md", encoding: .utf8)
        for info in Reason.table {
            let row = doc.split(separator: "\n").first { $0.hasPrefix("| ") && $0.contains("| `\(info.reasonClass.rawValue)` |") }
            #expect(row?.contains("`\(info.reason.rawValue)`") == true, "\(info.reason) is not in the \(info.reasonClass) row")
        }
    }

    @Test func mediaFacts_areKeptExactlyForReasonsWithPictures() {
        let media = MediaFacts(codec: "h264", width: 640, height: 480)
        for info in Reason.table where info.reasonClass == .degraded {
            let result = ProbeResult(reason: info.reason, message: "", mode: .deep, media: media)
            let state = StatusTracker.apply(result, to: .initial, retries: 2, at: Date())
            #expect((state.media != nil) == info.keepsMedia, "\(info.reason)")
        }
    }
}
