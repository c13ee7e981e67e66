import Foundation
import StreamPulseCore
import Synchronization
import Testing
@testable import StreamPulseHost

/// The engine's pure state machine, driven by events on a virtual clock (no sleeps, no plugins).
@Suite struct EngineMachineTests {
    static let facts: @Sendable (StreamConfig) -> PluginFacts? = { stream in
        stream.url.hasPrefix("rtsp://") ? PluginFacts(name: "rtsp", quickProbe: true) : nil
    }
    static let date = Date(timeIntervalSince1970: 1_800_000_000)

    func config(_ streams: [(String, String)], interval: Duration = .seconds(10)) -> Config {
        var settings = Settings()
        settings.interval = interval
        return Config(settings: settings, streams: streams.map { StreamConfig(id: $0.0, name: $0.0, url: $0.1) })
    }

    func starts(_ actions: [EngineMachine.Action]) -> [ProbeTicket] {
        actions.compactMap { if case let .start(ticket, _, _, _, _, _) = $0 { ticket } else { nil } }
    }

    func cancels(_ actions: [EngineMachine.Action]) -> [ProbeTicket] {
        actions.compactMap { if case let .cancel(ticket) = $0 { ticket } else { nil } }
    }

    func results(_ actions: [EngineMachine.Action]) -> [ResultRecord] {
        actions.compactMap { if case let .emit(.result(record)) = $0 { record } else { nil } }
    }

    /// A deep picture that does not match the reference makes the very next check deep (10 s later), so the
    /// mismatch is confirmed or cleared within one interval instead of one deep interval (5 min).
    @Test func aPictureMismatch_makesTheNextCheckDeep() throws {
        var machine = EngineMachine(config: config([("a", "rtsp://h/1")]), startupSpread: .seconds(1), now: 0, lookup: Self.facts)
        func run(_ now: Double, _ grid: LumaGrid?) throws -> ProbeMode? {
            let actions = machine.tick(now: now, at: Self.date)
            guard case let .start(ticket, request, _, _, _, _)? = actions.first(where: { if case .start = $0 { true } else { false } }) else { return nil }
            let result = grid.map { PictureJudgeTests.result($0) } ?? ProbeResult(reason: .ok, message: "quick", mode: .quick)
            _ = machine.probeFinished(ticket, result: request.mode == .deep ? result : ProbeResult(reason: .ok, message: "quick", mode: .quick),
                                      now: now + 1, at: Self.date.addingTimeInterval(now), jitter: 0.5)
            return request.mode
        }
        // Three deep probes (one per deep interval) learn the profile and the reference.
        var now = 2.0
        for _ in 0..<3 {
            #expect(try run(now, PictureJudgeTests.grid()) == .deep)
            #expect(try run(now + 20, nil) == .quick, "between deep probes, quick checks")
            now += 301
        }
        // The camera turned: the mismatch is noted, and the next check, 10 s later, is deep and confirms it.
        #expect(try run(now, PictureJudgeTests.grid(shift: 7)) == .deep)
        #expect(try run(now + 20, PictureJudgeTests.grid(shift: 7)) == .deep, "the mismatch is checked again at once")
        #expect(machine.state(of: "a")?.reason == .sceneChanged)
    }

    /// A stream taken over from another agent (issue #17) with a green verdict starts from it: shown green at
    /// once, first checked quick, deep only at its deep interval. A failing verdict or a stream already checked
    /// here is not taken.
    @Test func aStreamHandedOverGreen_startsGreen_andIsFirstCheckedQuick() throws {
        var machine = EngineMachine(config: config([("a", "rtsp://h/1"), ("b", "rtsp://h/2")]), startupSpread: .seconds(1), now: 0, lookup: Self.facts)
        var green = StreamState.initial
        green.status = .ok
        green.reason = .ok
        green.since = Self.date.addingTimeInterval(-3600)
        var down = green
        down.status = .down
        down.reason = .connectionRefused
        #expect(machine.handOver(["a": green, "b": down, "gone": green], now: 0) == ["a"])
        #expect(machine.state(of: "a")?.status == .ok && machine.state(of: "a")?.since == green.since)
        #expect(machine.state(of: "b")?.status == .unknown, "a failing stream is verified from the start")
        let modes = Dictionary(uniqueKeysWithValues: machine.tick(now: 2, at: Self.date).compactMap { action -> (String, ProbeMode)? in
            if case let .start(ticket, request, _, _, _, _) = action { (ticket.streamID, request.mode) } else { nil }
        })
        #expect(modes == ["a": .quick, "b": .deep], "\(modes)")
    }

    /// A dashboard over PostgreSQL (`serve --no-probe`) probes nothing: it takes the agents' verdicts as they
    /// are (a quick ok keeps the last deep verdict, an older result changes nothing), and a site out of reach
    /// turns its streams grey until their agents' next result.
    @Test func anObservingMachine_probesNothing_mirrorsVerdicts_andGreysAnUnreachableSite() throws {
        var cfg = config([("a", "rtsp://h/1"), ("b", "rtsp://h/2")])
        cfg.streams[0].site = "north"
        var machine = EngineMachine(config: cfg, startupSpread: .seconds(1), now: 0, lookup: Self.facts)
        machine.observing = true
        #expect(machine.tick(now: 5, at: Self.date).isEmpty && machine.tick(now: 600, at: Self.date).isEmpty, "nothing is probed")
        func record(_ id: String, _ at: Double, _ mode: ProbeMode, _ status: StreamStatus, _ reason: Reason, pending: Bool = false) -> ResultRecord {
            ResultRecord(streamId: id, at: Self.date.addingTimeInterval(at), mode: mode, status: status, pending: pending, reason: reason,
                         phase: nil, message: reason.rawValue, timings: Timings(totalMs: 12), media: nil)
        }
        func changes(_ actions: [EngineMachine.Action]) -> [StateChange] {
            actions.compactMap { if case let .emit(.change(c)) = $0 { c } else { nil } }
        }
        var actions = machine.mirror([record("a", 1, .deep, .ok, .ok), record("b", 1, .deep, .degraded, .timeout, pending: true)])
        #expect(changes(actions).map(\.streamId) == ["a", "b"])
        #expect(machine.state(of: "b")?.pending == true && machine.state(of: "b")?.status == .degraded, "the agent's retries are not applied twice")
        actions = machine.mirror([record("a", 2, .quick, .ok, .ok), record("b", 2, .deep, .down, .timeout), record("gone", 2, .deep, .ok, .ok)])
        #expect(changes(actions).map(\.streamId) == ["b"], "a quick ok keeps the deep verdict; an unknown stream is skipped")
        #expect(machine.state(of: "a")?.lastCheck == Self.date.addingTimeInterval(2) && machine.state(of: "a")?.since == Self.date.addingTimeInterval(1))
        #expect(changes(machine.mirror([record("b", 1.5, .deep, .ok, .ok)])).isEmpty && machine.state(of: "b")?.status == .down,
                "a result older than the last check is history only")
        actions = machine.siteUnreachable("north", message: "No agent of site north has reported for 40 s", at: Self.date.addingTimeInterval(50))
        #expect(changes(actions).map(\.streamId) == ["a"] && machine.state(of: "a")?.status == .unknown && machine.state(of: "a")?.reason == .siteUnreachable)
        #expect(changes(machine.siteUnreachable("north", message: "again", at: Self.date.addingTimeInterval(60))).isEmpty, "told once")
        #expect(machine.state(of: "b")?.status == .down, "another site's stream is untouched")
        actions = machine.mirror([record("a", 70, .quick, .ok, .ok)])
        #expect(machine.state(of: "a")?.reason == .ok && machine.state(of: "a")?.status == .ok, "the agents' next result brings the verdict back")
    }

    /// "since 03:12" in a picture message is in the configured time zone, also after a reload changes it.
    @Test func pictureMessages_tellTimeInTheConfiguredZone() throws {
        var tokyo = config([("a", "rtsp://h/1")])
        tokyo.settings.timezone = "Asia/Tokyo"
        var machine = EngineMachine(config: tokyo, startupSpread: .seconds(1), now: 0, lookup: Self.facts)
        var now = 2.0
        func deep(_ result: ProbeResult) throws -> ProbeResult? {
            let actions = machine.tick(now: now, at: Self.date.addingTimeInterval(now))
            guard case let .start(ticket, _, _, _, _, _)? = actions.first else { return nil }
            let done = machine.probeFinished(ticket, result: result, now: now + 1, at: Self.date.addingTimeInterval(now), jitter: 0.5)
            now += 301
            return done.compactMap { if case let .emit(.result(r)) = $0 { ProbeResult(reason: r.reason, message: r.message) } else { nil } }.first
        }
        for _ in 0..<3 { _ = try deep(PictureJudgeTests.result(PictureJudgeTests.grid())) }
        let at = Self.date.addingTimeInterval(now)
        let changed = try #require(try deep(PictureJudgeTests.result(PictureJudgeTests.grid(), width: 640, height: 480)))
        let clock = DateFormatter()
        clock.timeZone = TimeZone(identifier: "Asia/Tokyo")
        clock.dateFormat = "HH:mm"
        #expect(changed.reason == .profileChanged && changed.message.contains("since \(clock.string(from: at))"), "\(changed.message)")
    }

    @Test func aStreamRestartedMidProbe_startsAgainOnlyAfterTheOldProbeEnded_andCountsOneCheck() throws {
        var machine = EngineMachine(config: config([("a", "rtsp://h/1")]), startupSpread: .seconds(1), now: 0, lookup: Self.facts)
        let first = try #require(starts(machine.tick(now: 2, at: Self.date)).first)
        #expect(first == ProbeTicket(streamID: "a", generation: 1))

        // The URL is edited while the probe runs: the old probe is cancelled, nothing new starts yet.
        let (diff, actions) = machine.apply(config([("a", "rtsp://h/2")]), now: 3, at: Self.date)
        #expect(diff.restarted == ["a"])
        #expect(cancels(actions) == [first])
        #expect(starts(machine.tick(now: 3, at: Self.date)).isEmpty)
        #expect(starts(machine.tick(now: 60, at: Self.date)).isEmpty, "never two probes of one stream")
        #expect(machine.inFlightCount == 1)

        // The old probe ends (a plugin that ignored the cancel): its result is stale and dropped.
        let stale = machine.probeFinished(first, result: ProbeResult(reason: .ok, message: "old"), now: 61, at: Self.date, jitter: 0.5)
        #expect(stale.isEmpty)
        #expect(machine.checks == 0)
        #expect(machine.inFlightCount == 0)

        // The new generation starts at once, with the new URL, and its completion counts once.
        let next = machine.tick(now: 61, at: Self.date)
        let second = try #require(starts(next).first)
        #expect(second == ProbeTicket(streamID: "a", generation: 2))
        if case let .start(_, request, _, _, _, _) = next[0] { #expect(request.url == "rtsp://h/2") }
        let done = machine.probeFinished(second, result: ProbeResult(reason: .ok, message: "new", mode: .deep), now: 62, at: Self.date, jitter: 0.5)
        #expect(results(done).map(\.message) == ["new"])
        #expect(machine.checks == 1)
        // A duplicate completion of the same ticket changes nothing.
        #expect(machine.probeFinished(second, result: ProbeResult(reason: .timeout, message: "dup"), now: 62, at: Self.date, jitter: 0.5).isEmpty)
        #expect(machine.checks == 1)
        #expect(machine.state(of: "a")?.status == .ok)
    }

    @Test func aRemovedStream_dropsItsLateResult_andReAddingWaitsForTheOldProbe() throws {
        var machine = EngineMachine(config: config([("a", "rtsp://h/1"), ("b", "rtsp://h/2")]), startupSpread: .seconds(1), now: 0, lookup: Self.facts)
        let tickets = starts(machine.tick(now: 2, at: Self.date))
        #expect(Set(tickets.map(\.streamID)) == ["a", "b"])
        let a1 = try #require(tickets.first { $0.streamID == "a" })
        _ = machine.apply(config([("b", "rtsp://h/2")]), now: 3, at: Self.date)
        #expect(machine.snapshot(id: "a") == nil)
        // Back before the old probe ended: it waits for that probe.
        _ = machine.apply(config([("a", "rtsp://h/1"), ("b", "rtsp://h/2")]), now: 4, at: Self.date)
        #expect(starts(machine.tick(now: 100, at: Self.date)).isEmpty)
        #expect(machine.probeFinished(a1, result: ProbeResult(reason: .ok, message: "late"), now: 101, at: Self.date, jitter: 0.5).isEmpty)
        #expect(machine.state(of: "a") == .initial)
        let a3 = try #require(starts(machine.tick(now: 101, at: Self.date)).first)
        #expect(a3.streamID == "a" && a3.generation > a1.generation)
    }

    @Test func aStreamWithoutAPlugin_isGreyAtOnce_andStartsWhenOneIsLoaded() throws {
        final class Loaded: Sendable { let flag = Mutex(false) }
        let loaded = Loaded()
        var machine = EngineMachine(config: config([("m", "misbehave://h/1")]), startupSpread: .seconds(1), now: 0) { _ in
            loaded.flag.withLock { $0 } ? PluginFacts(name: "misbehaving", quickProbe: false) : nil
        }
        let actions = machine.tick(now: 2, at: Self.date)
        #expect(starts(actions).isEmpty)
        #expect(results(actions).map(\.reason) == [.noPlugin])
        #expect(machine.state(of: "m")?.status == .unknown)
        loaded.flag.withLock { $0 = true }
        _ = machine.pluginsChanged(now: 3)
        #expect(starts(machine.tick(now: 3, at: Self.date)).map(\.streamID) == ["m"])
    }

    @Test func randomEdits_neverRunTwoProbesOfOneStream_andCountEachCurrentCompletionOnce() {
        var rng = SplitMix(seed: 42)
        let ids = (0..<8).map { "s\($0)" }
        func randomConfig() -> Config {
            config(ids.filter { _ in rng.next() % 4 != 0 }.map { ($0, "rtsp://h/\($0)?v=\(rng.next() % 3)") }, interval: .seconds(5))
        }
        var machine = EngineMachine(config: randomConfig(), startupSpread: .seconds(2), now: 0, lookup: Self.facts)
        var running: [ProbeTicket] = []
        var currentCompletions = 0
        var t = 0.0
        for _ in 0..<3_000 {
            t += 0.25
            switch rng.next() % 10 {
            case 0: _ = machine.apply(randomConfig(), now: t, at: Self.date)
            case 1...4 where !running.isEmpty:
                let ticket = running.remove(at: Int(rng.next() % UInt64(running.count)))
                let before = machine.checks
                let isCurrent = machine.ticket(of: ticket.streamID) == ticket && machine.stream(ticket.streamID) != nil
                    && machine.snapshot(id: ticket.streamID) != nil
                _ = machine.probeFinished(ticket, result: ProbeResult(reason: rng.next() % 2 == 0 ? .ok : .timeout, message: ""),
                                          now: t, at: Self.date, jitter: 0.5)
                if machine.checks > before { currentCompletions += 1 }
                #expect(machine.checks - before <= (isCurrent ? 1 : 0))
            default:
                running += starts(machine.tick(now: t, at: Self.date))
            }
            let perStream = Dictionary(grouping: running, by: \.streamID)
            #expect(perStream.values.allSatisfy { $0.count == 1 }, "two probes of one stream at t=\(t)")
            #expect(machine.inFlightCount == running.count)
        }
        #expect(currentCompletions == machine.checks)
        #expect(machine.checks > 100)
    }
}
