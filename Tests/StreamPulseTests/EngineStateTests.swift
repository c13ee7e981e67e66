import Foundation
import StreamPulseCore
import Testing
@testable import StreamPulseHost

/// The pure state machines of the engine, on a virtual clock: schedule, backoff, status, config diff.
@Suite struct ScheduleTests {
    let plan = Schedule.Plan(interval: .seconds(60), deepInterval: .seconds(300), backoffCap: .seconds(600), quickAvailable: true)

    @Test func startTimes_areSpreadDeterministically_acrossTheInterval() {
        let offsets = (0..<10_000).map { Schedule.offset(for: "cam\($0)", interval: .seconds(60)) }
        #expect(offsets == (0..<10_000).map { Schedule.offset(for: "cam\($0)", interval: .seconds(60)) })
        // No one-second bucket holds more than twice its fair share (10,000 / 60 ≈ 167).
        var buckets = [Int](repeating: 0, count: 60)
        for o in offsets { buckets[min(59, Int(o))] += 1 }
        #expect(buckets.max()! < 334, "\(buckets)")
        #expect(buckets.min()! > 80)
    }

    @Test func eachStream_isCheckedEveryInterval_deepEveryDeepInterval_quickBetween() {
        var schedule = Schedule()
        schedule.addNow("a", plan: plan, now: 0)
        var modes: [ProbeMode] = []
        var deepTimes: [Double] = []
        var now = 0.0
        let phase = Schedule.offset(for: "a", interval: .seconds(60))
        for round in 0..<11 {
            let due = schedule.due(at: now)
            #expect(due.count == 1)
            modes.append(due[0].mode)
            if due[0].mode == .deep { deepTimes.append(now) }
            schedule.completed("a", success: true, dueAt: due[0].dueAt, now: now + 1, jitter: 0.5)
            let next = schedule.nextDue(of: "a")!
            // After the first check the stream sits on its phase and is checked exactly every interval.
            #expect(abs((next - phase).truncatingRemainder(dividingBy: 60)) < 1e-6 || abs((next - phase).truncatingRemainder(dividingBy: 60) - 60) < 1e-6)
            if round > 0 { #expect(abs(next - due[0].dueAt - 60) < 1e-6) } else { #expect(next - due[0].dueAt >= 30 && next - due[0].dueAt <= 90) }
            now = next
        }
        #expect(modes.filter { $0 == .quick }.count >= 8)
        // Deep probes come once the deep interval has passed, within one check interval of it.
        #expect(deepTimes.count >= 2)
        for (a, b) in zip(deepTimes, deepTimes.dropFirst()) { #expect(b - a >= 300 && b - a < 360, "\(deepTimes)") }
    }

    @Test func noQuickProbe_meansEveryCheckIsDeep() {
        var schedule = Schedule()
        var p = plan
        p.quickAvailable = false
        schedule.addNow("a", plan: p, now: 0)
        for round in 0..<3 {
            let due = schedule.due(at: Double(round) * 60)
            #expect(due.map(\.mode) == [.deep])
            schedule.completed("a", success: true, dueAt: due[0].dueAt, now: due[0].dueAt, jitter: 0.5)
        }
    }

    @Test func inFlightStreams_areNotHandedOutTwice_andNothingBeforeItsTime() {
        var schedule = Schedule()
        schedule.addNow("a", plan: plan, now: 0)
        #expect(schedule.due(at: 0).count == 1)
        #expect(schedule.due(at: 1000).isEmpty)
        schedule.add("b", plan: plan, now: 0)
        // The first round is spread over min(interval, 30 s).
        let offset = Schedule.offset(for: "b", interval: .seconds(30))
        #expect(schedule.due(at: offset - 0.01).isEmpty)
        #expect(schedule.due(at: offset).map(\.id) == ["b"])
    }

    @Test func failures_backOff_exponentiallyToTheCap_andSuccessRestoresTheCadence() {
        var schedule = Schedule()
        schedule.addNow("a", plan: plan, now: 0)
        var now = 0.0
        var delays: [Double] = []
        for _ in 0..<6 {
            let due = schedule.due(at: now)
            #expect(due.first?.mode == .deep, "a failing stream is always checked deep")
            schedule.completed("a", success: false, dueAt: due[0].dueAt, now: now, jitter: 0.5)
            let next = schedule.nextDue(of: "a")!
            delays.append(next - now)
            now = next
        }
        #expect(delays == [60, 120, 240, 480, 600, 600])
        let due = schedule.due(at: now)
        schedule.completed("a", success: true, dueAt: due[0].dueAt, now: now, jitter: 0.5)
        // Back on its phase, between half an interval and one and a half from now.
        let next = schedule.nextDue(of: "a")! - now
        #expect(next >= 30 && next <= 90)
        #expect(schedule.failures(of: "a") == 0)
    }

    @Test func aLateCheck_isRescheduledOnItsPhase_afterNow_notInThePast() {
        var schedule = Schedule()
        let phase = Schedule.offset(for: "a", interval: .seconds(60))
        schedule.addNow("a", plan: plan, now: phase)
        let due = schedule.due(at: phase)
        schedule.completed("a", success: true, dueAt: due[0].dueAt, now: phase + 90, jitter: 0.5)
        #expect(abs(schedule.nextDue(of: "a")! - (phase + 120)) < 1e-6)
    }

    @Test func removedStreams_areNeverDue_andReAddingRestartsThem() {
        var schedule = Schedule()
        schedule.addNow("a", plan: plan, now: 0)
        schedule.remove("a")
        #expect(schedule.due(at: 1000).isEmpty)
        schedule.addNow("a", plan: plan, now: 5)
        #expect(schedule.due(at: 5).map(\.id) == ["a"])
        #expect(schedule.earliestDue() == nil)
    }

    @Test func backoff_jitterStaysWithinItsFraction_andUnderTheCap() {
        let backoff = Backoff(base: .seconds(10), cap: .seconds(100), jitterFraction: 0.1)
        #expect(backoff.delay(afterFailures: 0, jitter: 0.9) == .seconds(10))
        #expect(backoff.delay(afterFailures: 2, jitter: 0) == .seconds(18))
        #expect(backoff.delay(afterFailures: 2, jitter: 1 - 1e-12).seconds.rounded() == 22)
        #expect(backoff.delay(afterFailures: 30, jitter: 0.99) == .seconds(100))
    }
}

@Suite struct StatusTrackerTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)
    func result(_ reason: Reason, _ mode: ProbeMode = .deep) -> ProbeResult {
        ProbeResult(reason: reason, phase: .connect, message: reason.rawValue, mode: mode)
    }

    @Test func deepOK_isGreen_withSince() {
        let state = StatusTracker.apply(result(.ok), to: .initial, retries: 2, at: t0)
        #expect(state.status == .ok)
        #expect(state.since == t0)
        #expect(state.lastPicture == t0)
    }

    @Test func quickOK_neverTurnsAStreamGreen() {
        let unknown = StatusTracker.apply(result(.ok, .quick), to: .initial, retries: 2, at: t0)
        #expect(unknown.status == .unknown)
        let black = StatusTracker.apply(result(.black), to: .initial, retries: 2, at: t0)
        #expect(StatusTracker.apply(result(.ok, .quick), to: black, retries: 2, at: t0 + 60).status == .degraded)
        let green = StatusTracker.apply(result(.ok), to: .initial, retries: 2, at: t0)
        let still = StatusTracker.apply(result(.ok, .quick), to: green, retries: 2, at: t0 + 60)
        #expect(still.status == .ok && still.since == t0)
    }

    @Test func downReasons_arePendingUntilPastRetries_thenRed_thenGreenOnRecovery() {
        var state = StatusTracker.apply(result(.ok), to: .initial, retries: 2, at: t0)
        var statuses: [(StreamStatus, Bool)] = []
        for i in 1...4 {
            state = StatusTracker.apply(result(.connectionRefused), to: state, retries: 2, at: t0 + Double(i))
            statuses.append((state.status, state.pending))
        }
        #expect(statuses.map(\.0) == [.degraded, .degraded, .down, .down])
        #expect(statuses.map(\.1) == [true, true, false, false])
        #expect(state.since == t0 + 3)
        state = StatusTracker.apply(result(.ok), to: state, retries: 2, at: t0 + 10)
        #expect(state.status == .ok && state.consecutiveFailures == 0 && state.since == t0 + 10)
    }

    @Test(arguments: [Reason.unauthorized, .forbidden, .notFound, .frozen, .black, .lowFps, .slowFirstFrame])
    func degradedReasons_areYellowAtOnce(reason: Reason) {
        let state = StatusTracker.apply(result(reason), to: .initial, retries: 5, at: t0)
        #expect(state.status == .degraded && !state.pending && state.reason == reason)
    }

    @Test func noPlugin_isGrey_andCancelledChangesNothing() {
        let grey = StatusTracker.apply(result(.noPlugin), to: .initial, retries: 2, at: t0)
        #expect(grey.status == .unknown)
        let green = StatusTracker.apply(result(.ok), to: .initial, retries: 2, at: t0)
        #expect(StatusTracker.apply(result(.cancelled), to: green, retries: 2, at: t0 + 1) == green)
    }

    @Test func changes_areEvents_onlyWhenStatusReasonOrPendingChange() {
        let a = StatusTracker.apply(result(.ok), to: .initial, retries: 2, at: t0)
        let b = StatusTracker.apply(result(.ok), to: a, retries: 2, at: t0 + 1)
        #expect(StatusTracker.change(from: .initial, to: a, stream: "s", at: t0, thumbnail: nil) != nil)
        #expect(StatusTracker.change(from: a, to: b, stream: "s", at: t0 + 1, thumbnail: nil) == nil)
        let c = StatusTracker.apply(result(.frozen), to: b, retries: 2, at: t0 + 2)
        #expect(StatusTracker.change(from: b, to: c, stream: "s", at: t0 + 2, thumbnail: nil)?.to.reason == .frozen)
    }
}

@Suite struct ConfigDiffTests {
    func config(_ streams: [StreamConfig], password: String = "p") -> Config {
        Config(credentials: ["lobby": CredentialRef(username: "u", password: password)], streams: streams)
    }
    func stream(_ id: String, url: String = "rtsp://h/1", name: String? = nil, credentials: String? = nil) -> StreamConfig {
        var s = StreamConfig(id: id, name: name ?? id, url: url)
        s.credentialsName = credentials
        return s
    }

    @Test func diff_sortsStreamsIntoAddedRemovedRestartedRelabelled() {
        let old = config([stream("keep"), stream("rename"), stream("move"), stream("gone")])
        let new = config([stream("keep"), stream("rename", name: "New name"), stream("move", url: "rtsp://h/2"), stream("new")])
        let diff = ConfigDiff(from: old, to: new)
        #expect(diff.added == ["new"])
        #expect(diff.removed == ["gone"])
        #expect(diff.restarted == ["move"])
        #expect(diff.relabelled == ["rename"])
        #expect(!diff.scheduleSettingsChanged)
    }

    @Test func aSecretChange_restartsOnlyTheStreamsUsingIt() {
        let streams = [stream("a", credentials: "lobby"), stream("b"), stream("c", credentials: "lobby")]
        let diff = ConfigDiff(from: config(streams, password: "old"), to: config(streams, password: "new"))
        #expect(diff.restarted == ["a", "c"])
        #expect(diff.added.isEmpty && diff.removed.isEmpty)
    }

    @Test func identicalConfigs_makeAnEmptyDiff() {
        let c = config([stream("a")])
        #expect(ConfigDiff(from: c, to: c).isEmpty)
    }
}
