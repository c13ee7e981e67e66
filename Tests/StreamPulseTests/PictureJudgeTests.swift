import Foundation
import Testing
@testable import StreamPulseHost
import StreamPulseCore

/// The pure picture judge on synthetic grids: profile learning and drift, a confirmed scene verdict, a
/// stable reference, frozen across probes, and the in-window OSD-clock rule.
struct PictureJudgeTests {
    /// A textured 48 × 27 grid; `shift` moves its content right, `scale`/`offset` change exposure.
    static func grid(shift: Int = 0, scale: Double = 1, offset: Double = 0, cover: Bool = false, seed: Int = 1) -> LumaGrid {
        var values = [UInt8](repeating: 0, count: 48 * 27)
        for row in 0..<27 {
            for column in 0..<48 {
                let x = column - shift
                var v = Double(((x * 37 + row * 11 + seed) % 9) * 20 + (x / 6 % 2) * 40 + row * 2)
                if cover && column < 28 { v = 120 }
                values[row * 48 + column] = UInt8(max(0, min(255, v * scale + offset)))
            }
        }
        return LumaGrid(columns: 48, rows: 27, values: Data(values))
    }

    static func result(_ grid: LumaGrid, width: Int = 1920, height: Int = 1080, fps: Double = 25, bitrate: Double = 2_000_000,
                       sharpness: Double = 0.8, frames: Int = 2) -> ProbeResult {
        ProbeResult(reason: .ok, phase: .sample, message: "Pictures decoded.", mode: .deep,
                    media: MediaFacts(codec: "h264", width: width, height: height, fps: fps, bitrateBps: bitrate, audio: false),
                    image: ImageFacts(frozen: false, black: false, framesSampled: frames, sharpness: sharpness, grid: grid))
    }

    let stream = StreamConfig(id: "cam", name: "cam", url: "rtsp://127.0.0.1/x")
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func judge(_ j: inout PictureJudge, _ r: ProbeResult, _ n: Int) -> ProbeResult { j.judge("cam", r, stream: stream, at: t0.addingTimeInterval(Double(n) * 300)).0 }

    @Test func theProfileIsLearned_thenAResolutionChange_isNamed_untilAccepted() {
        var j = PictureJudge()
        for n in 0..<3 { #expect(judge(&j, Self.result(Self.grid()), n).reason == .ok) }
        #expect(j.baseline(of: "cam")?.profile?.width == 1920)
        let changed = judge(&j, Self.result(Self.grid(), width: 640, height: 480), 3)
        #expect(changed.reason == .profileChanged && changed.message.hasPrefix("1920×1080 → 640×480 since "), "\(changed.message)")
        #expect(j.acceptProfile("cam", by: "ada", at: t0) != nil)
        #expect(judge(&j, Self.result(Self.grid(), width: 640, height: 480), 4).reason == .ok)
    }

    @Test func aBitrateCollapse_andFarLowerFps_areJudgedAgainstTheProfile() {
        var j = PictureJudge()
        for n in 0..<3 { _ = judge(&j, Self.result(Self.grid()), n) }
        #expect(judge(&j, Self.result(Self.grid(), bitrate: 90_000), 3).reason == .lowBitrate)
        #expect(judge(&j, Self.result(Self.grid(), fps: 6), 4).reason == .lowFps)
        #expect(judge(&j, Self.result(Self.grid(), fps: 20, bitrate: 1_500_000), 5).reason == .ok)
    }

    @Test func aMovedView_isSceneChanged_onlyOnceTheNextProbeConfirmsIt_andNightIsNot() {
        var j = PictureJudge()
        for n in 0..<3 { _ = judge(&j, Self.result(Self.grid()), n) }
        #expect(j.baseline(of: "cam")?.reference != nil, "the reference is a picture that matched the one before it")
        let night = judge(&j, Self.result(Self.grid(scale: 0.4, offset: 5)), 3)
        #expect(night.reason == .ok, "\(night.message)")
        let once = judge(&j, Self.result(Self.grid(shift: 7)), 4)
        #expect(once.reason == .ok && once.message.contains("the next check (deep) confirms"), "\(once.message)")
        let twice = judge(&j, Self.result(Self.grid(shift: 7)), 5)
        #expect(twice.reason == .sceneChanged, "\(twice.message)")
        // An admin takes the current picture as the reference: the new view is normal from then on.
        j.adoptReference("cam", by: "ada")
        _ = judge(&j, Self.result(Self.grid(shift: 7)), 6)
        #expect(judge(&j, Self.result(Self.grid(shift: 7)), 7).reason == .ok)
    }

    /// Two damaged or half-composed pictures in a row both mismatch the reference, but not each other: no
    /// verdict. Only the same new view seen twice confirms it (the false-alarm bench found such pairs).
    @Test func twoDifferentMismatches_doNotConfirmEachOther_theSameNewViewTwiceDoes() {
        var j = PictureJudge()
        for n in 0..<3 { _ = judge(&j, Self.result(Self.grid()), n) }
        let garbled = Self.result(Self.grid(shift: 7, seed: 5))
        let other = Self.result(Self.grid(shift: 2, scale: 0.5, cover: true, seed: 3))
        #expect(PictureChecks.sameView(PictureChecks.halved(garbled.image!.grid!), PictureChecks.halved(Self.grid(shift: 19, seed: 8))) == false)
        #expect(judge(&j, garbled, 3).reason == .ok)
        let second = judge(&j, Self.result(Self.grid(shift: 19, seed: 8)), 4)
        #expect(second.reason == .ok && second.message.contains("the next check (deep) confirms"), "\(second.message)")
        #expect(judge(&j, other, 5).reason == .ok)
        #expect(judge(&j, Self.result(Self.grid(shift: 19, seed: 8)), 6).reason == .ok, "a different mismatch came between")
        #expect(judge(&j, Self.result(Self.grid(shift: 19, seed: 8)), 7).reason == .sceneChanged)
        #expect(judge(&j, Self.result(Self.grid(shift: 19, seed: 8)), 8).reason == .sceneChanged, "the verdict holds while the view stays")
    }

    @Test func aCoveredView_isObstructed_andASofterPicture_isBlurred() {
        var j = PictureJudge()
        for n in 0..<3 { _ = judge(&j, Self.result(Self.grid()), n) }
        _ = judge(&j, Self.result(Self.grid(cover: true)), 3)
        #expect(judge(&j, Self.result(Self.grid(cover: true)), 4).reason == .obstructed)
        _ = judge(&j, Self.result(Self.grid(), sharpness: 0.3), 5)
        let blurred = judge(&j, Self.result(Self.grid(), sharpness: 0.3), 6)
        #expect(blurred.reason == .blurred && blurred.message.contains("% of the reference picture's 0.80"), "\(blurred.message)")
    }

    /// Obstruction counts the reference's detail that is hidden, not how much of the view is plain: a scene
    /// that is half sky, whose detailed half is half covered, is obstructed; the same scene with noise is not.
    @Test func obstruction_countsTheHiddenDetail_notThePlainSky() {
        func scene(cover: Bool, noise: Int = 0) -> LumaGrid {
            let textured = Self.grid(seed: 2)
            var values = [UInt8](textured.values)
            for row in 0..<27 {
                for column in 0..<48 {
                    if row < 12 { values[row * 48 + column] = UInt8(180 + (row + column + noise) % 2 * noise) }  // sky
                    else if cover && column < 24 { values[row * 48 + column] = 90 }  // a board over the detailed half
                }
            }
            return LumaGrid(columns: 48, rows: 27, values: Data(values))
        }
        let reference = scene(cover: false)
        #expect(PictureChecks.structureCovered(scene(cover: false, noise: 1), reference: reference) == 0)
        let covered = PictureChecks.structureCovered(scene(cover: true), reference: reference) ?? 0
        #expect(covered >= 0.45 && covered <= 0.55, "\(covered)")
        #expect(PictureChecks.uniformCoverage(scene(cover: true)) - PictureChecks.uniformCoverage(reference) < 0.3,
                "the plain share grows by less than the old rule's margin, yet half the detail is gone")
    }

    @Test func aWindowWithOnePicture_thatEqualsThePreviousProbes_isFrozen_aLiveOneIsNot() {
        var j = PictureJudge()
        for n in 0..<3 { _ = judge(&j, Self.result(Self.grid()), n) }
        let frozen = judge(&j, Self.result(Self.grid(), frames: 1), 3)
        #expect(frozen.reason == .frozen && frozen.message.contains("previous deep probe"), "\(frozen.message)")
        let live = judge(&j, Self.result(Self.grid(seed: 4), frames: 1), 4)
        #expect(live.reason != .frozen, "\(live.message)")
    }

    @Test func pinnedExpectations_winOverWhatWasLearned() {
        var j = PictureJudge()
        var pinned = stream
        pinned.expect = StreamProfile(codec: "h265")
        let r = j.judge("cam", Self.result(Self.grid()), stream: pinned, at: t0).0
        #expect(r.reason == .profileChanged && r.message.hasPrefix("h265 → h264"), "\(r.message)")
    }
}
