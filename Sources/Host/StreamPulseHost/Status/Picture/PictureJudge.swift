import Foundation
import StreamPulseCore

/// What a stream normally sends, learned from its first good deep probes or pinned by `expect:`.
public struct StreamProfile: Codable, Sendable, Equatable {
    public var codec: String?
    public var width: Int?
    public var height: Int?
    public var fps: Double?
    public var bitrateBps: Double?
    public var keyframeIntervalSeconds: Double?
    public var audio: Bool?

    public init(codec: String? = nil, width: Int? = nil, height: Int? = nil, fps: Double? = nil, bitrateBps: Double? = nil,
                keyframeIntervalSeconds: Double? = nil, audio: Bool? = nil) {
        self.codec = codec
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrateBps = bitrateBps
        self.keyframeIntervalSeconds = keyframeIntervalSeconds
        self.audio = audio
    }

    /// The profile of one probe's media facts.
    public init(_ media: MediaFacts) {
        self.init(codec: media.codec, width: media.width, height: media.height, fps: media.fps, bitrateBps: media.bitrateBps,
                  keyframeIntervalSeconds: media.keyframeIntervalSeconds, audio: media.audio)
    }

    /// "1920×1080", or nil without a size.
    var size: String? {
        guard let width, let height else { return nil }
        return "\(width)×\(height)"
    }

    /// What differs from `other` in codec, size and audio, as "1920×1080 → 640×480" phrases.
    func changes(to now: StreamProfile) -> [String] {
        var out: [String] = []
        if let codec, let nowCodec = now.codec, codec != nowCodec { out.append("\(codec) → \(nowCodec)") }
        if let size, let nowSize = now.size, size != nowSize { out.append("\(size) → \(nowSize)") }
        if let audio, let nowAudio = now.audio, audio != nowAudio { out.append(audio ? "audio → no audio" : "no audio → audio") }
        return out
    }

    /// This profile with the fields `pinned` gives replaced.
    func pinned(by pinned: StreamProfile?) -> StreamProfile {
        guard let pinned else { return self }
        var out = self
        if let v = pinned.codec { out.codec = v }
        if let v = pinned.width { out.width = v }
        if let v = pinned.height { out.height = v }
        if let v = pinned.fps { out.fps = v }
        if let v = pinned.bitrateBps { out.bitrateBps = v }
        if let v = pinned.audio { out.audio = v }
        return out
    }
}

/// One stream's learned baseline: its profile and its reference view. Persisted (SQLite
/// `picture_baselines`) so a restart keeps judging against the same view.
public struct PictureBaseline: Codable, Sendable, Equatable {
    /// The learned (or accepted) profile; nil while still learning.
    public var profile: StreamProfile?
    /// `learned` or `accepted` (by whom).
    public var profileSource: String?
    public var profileAt: Date?
    /// Profiles of good deep probes seen while learning (at most `PictureJudge.learningProbes`).
    public var learning: [StreamProfile] = []
    /// The reference view, its sharpness and uniform coverage, and when it was taken.
    public var reference: LumaGrid?
    public var referenceSharpness: Double?
    public var referenceCoverage: Double?
    public var referenceAt: Date?
    /// Who set the reference (nil: the first good picture).
    public var referenceBy: String?
    /// Since when the stream's codec/size/audio differ from the profile.
    public var driftSince: Date?

    public init() {}
}

/// A baseline to store, with the reference picture's JPEG when the reference was (re)taken.
public struct BaselineRecord: Sendable, Equatable {
    public var streamId: String
    public var baseline: PictureBaseline
    public var referenceJpeg: Data?
}

/// Per-stream picture thresholds with their defaults.
public struct PictureThresholds: Sendable, Equatable {
    /// Edge correlation with the reference below which the scene changed.
    public var scene = 0.5
    /// Sharpness as a fraction of the reference's below which the picture is blurred.
    public var blur = 0.65
    /// Share of the reference view's detail (its structured blocks) now hidden under uniform areas from which
    /// the view is obstructed.
    public var obstruction = 0.4
    /// Bitrate as a fraction of the profile's below which it collapsed.
    public var lowBitrate = 0.1
    /// Fps as a fraction of the profile's below which it is `low_fps` (without a hand-set `min_fps`).
    public var lowFps = 0.5
    /// Mean difference (0–255, on the halved grid) under which two probes' pictures are the same picture.
    public var frozenAcrossProbes = 0.35
    public init() {}
}

/// Judges each deep probe's picture and media against the stream's profile and reference view: the host
/// half of picture health (the plugin half is black and frozen within its window). Pure: results in,
/// judged results and baselines to store out; a plugin's own failure verdict is never overridden.
public struct PictureJudge: Sendable {
    /// Good deep probes a profile is learned from.
    public static let learningProbes = 3

    struct Entry: Sendable {
        var baseline = PictureBaseline()
        /// The previous deep probe's picture (halved grid) and its time, for frozen across probes.
        var previous: LumaGrid?
        var previousAt: Date?
        /// The last good probe's profile (what "accept the new profile" accepts).
        var observed: StreamProfile?
        /// Take the next decoded picture as the reference (set by an admin), and who asked.
        var adoptReference: String?
        /// A scene verdict seen once, waiting for the next deep probe to confirm it (one damaged or
        /// half-decoded picture must not call a camera moved), and that picture (halved grid): the
        /// confirming picture must show the same view, not merely another mismatch.
        var suspect: Reason?
        var suspectPicture: LumaGrid?
    }

    private var entries: [String: Entry] = [:]
    public var timeZone: TimeZone = TimeZone(identifier: "UTC")!

    public init() {}

    /// Baselines restored from storage at start.
    public mutating func restore(_ baselines: [String: PictureBaseline]) {
        for (id, baseline) in baselines { entries[id, default: Entry()].baseline = baseline }
    }

    /// A removed stream's baseline is dropped (its stored row goes with its history).
    public mutating func forget(_ id: String) { entries[id] = nil }

    /// Whether a picture mismatch waits for the next deep probe to confirm or clear it (the engine then makes
    /// the stream's next check deep instead of waiting for its deep interval).
    public func awaitsConfirmation(_ id: String) -> Bool { entries[id]?.suspect != nil }

    /// The stream's baseline, for the API.
    public func baseline(of id: String) -> PictureBaseline? { entries[id]?.baseline }

    /// The profile an admin accepts (the last good probe's), stored at once; nil when none was seen.
    public mutating func acceptProfile(_ id: String, by user: String, at now: Date) -> BaselineRecord? {
        guard var entry = entries[id], let observed = entry.observed else { return nil }
        entry.baseline.profile = observed
        entry.baseline.profileSource = "accepted by \(user)"
        entry.baseline.profileAt = now
        entry.baseline.learning = []
        entry.baseline.driftSince = nil
        entries[id] = entry
        return BaselineRecord(streamId: id, baseline: entry.baseline)
    }

    /// The next decoded picture becomes the reference (an admin's "use the current picture").
    public mutating func adoptReference(_ id: String, by user: String) {
        entries[id, default: Entry()].adoptReference = user
    }

    /// Judges a deep result. Returns it (possibly with a picture-health reason) and a baseline to store.
    public mutating func judge(_ id: String, _ input: ProbeResult, stream: StreamConfig, at now: Date) -> (ProbeResult, BaselineRecord?) {
        guard input.mode == .deep, stream.pictureChecks else { return (input, nil) }
        var result = input
        var entry = entries[id] ?? Entry()
        var changed = false
        var jpegForReference: Data?
        let thresholds = stream.pictureThresholds
        let ignore = stream.ignore
        let grid = result.image?.grid
        let halved = grid.map(PictureChecks.halved)
        defer {
            // The previous picture is kept whatever the verdict (frozen across probes compares neighbours).
            if let halved {
                entry.previous = halved
                entry.previousAt = now
            }
            entries[id] = entry
        }
        // The grid is the host's input, not a fact to pass on to sinks.
        result.image?.grid = nil

        // An admin asked for the current picture as the reference: any decoded picture will do.
        if let user = entry.adoptReference, let grid, result.reason.info?.keepsMedia == true {
            setReference(&entry.baseline, grid: grid, sharpness: result.image?.sharpness, at: now, by: user)
            entry.adoptReference = nil
            changed = true
            jpegForReference = result.thumbnailJpeg
        }
        guard result.reason == .ok, let media = result.media else {
            return (result, changed ? BaselineRecord(streamId: id, baseline: entry.baseline, referenceJpeg: jpegForReference) : nil)
        }
        let observed = StreamProfile(media)
        entry.observed = observed

        // 1. Profile: learn it, then judge drift from it (pinned fields from `expect:` always win).
        if entry.baseline.profile == nil {
            if let last = entry.baseline.learning.last, !last.changes(to: observed).isEmpty { entry.baseline.learning = [] }
            entry.baseline.learning.append(observed)
            // Stored once learned (a restart while learning starts learning again).
            if entry.baseline.learning.count >= Self.learningProbes {
                entry.baseline.profile = Self.learn(entry.baseline.learning)
                entry.baseline.profileSource = "learned"
                entry.baseline.profileAt = now
                entry.baseline.learning = []
                changed = true
            }
        }
        let learned = entry.baseline.profile ?? (stream.expect != nil ? StreamProfile() : nil)
        var verdict: (Reason, String)?
        if let profile = learned?.pinned(by: stream.expect) {
            let changes = profile.changes(to: observed)
            if !changes.isEmpty {
                if entry.baseline.driftSince == nil { entry.baseline.driftSince = now; changed = true }
                let since = Self.clock(entry.baseline.driftSince ?? now, timeZone)
                verdict = (.profileChanged, "\(changes.joined(separator: ", ")) since \(since) — camera reset to defaults? Accept the new profile on the dashboard if it is intended.")
            } else {
                if entry.baseline.driftSince != nil { entry.baseline.driftSince = nil; changed = true }
                if stream.thresholds.minFps == nil, let want = profile.fps, let fps = media.fps, fps < want * thresholds.lowFps {
                    verdict = (.lowFps, String(format: "%.1f fps, far below the stream's usual %.1f fps (profile).", fps, want))
                } else if let want = profile.bitrateBps, let rate = media.bitrateBps, want > 0, rate < want * thresholds.lowBitrate {
                    verdict = (.lowBitrate, String(format: "The bitrate collapsed to %@, %.0f %% of the stream's usual %@ (profile).",
                                                   Self.rate(rate), rate / want * 100, Self.rate(want)))
                }
            }
        }

        // 2. Reference view: the first good picture that matches the one before it (a stable view, not a
        //    damaged keyframe), unless an admin set one. A scene verdict counts once the next deep probe
        //    confirms it.
        var note = ""
        if verdict == nil, let grid, let halved {
            if entry.baseline.reference == nil || entry.baseline.reference?.columns != grid.columns || entry.baseline.reference?.rows != grid.rows {
                if let previous = entry.previous, let agreement = PictureChecks.edgeCorrelation(previous, halved), agreement >= 0.8 {
                    setReference(&entry.baseline, grid: grid, sharpness: result.image?.sharpness, at: now, by: nil)
                    changed = true
                    jpegForReference = result.thumbnailJpeg
                }
                entry.suspect = nil
                entry.suspectPicture = nil
            } else if let reference = entry.baseline.reference {
                let found = scene(grid, reference: reference, baseline: entry.baseline, sharpness: result.image?.sharpness,
                                  thresholds: thresholds, ignore: ignore)
                if let found, entry.suspect == found.0, let seen = entry.suspectPicture, PictureChecks.sameView(seen, halved, ignore: ignore) {
                    verdict = found
                    entry.suspectPicture = halved
                } else if let found {
                    entry.suspect = found.0
                    entry.suspectPicture = halved
                    note = " One picture did not match the reference view (\(found.0)); the next check (deep) confirms or clears it."
                } else {
                    entry.suspect = nil
                    entry.suspectPicture = nil
                }
            }
        } else if verdict != nil {
            entry.suspect = nil
            entry.suspectPicture = nil
        }

        // 3. Frozen across probes: a window that could not compare two pictures is compared with the
        //    previous deep probe's picture, minutes earlier.
        if verdict == nil, (result.image?.framesSampled ?? 0) < 2, let halved, let previous = entry.previous, let previousAt = entry.previousAt,
           let still = PictureChecks.stillness(previous, halved, ignore: ignore, threshold: thresholds.frozenAcrossProbes),
           still.mean < thresholds.frozenAcrossProbes {
            let minutes = now.timeIntervalSince(previousAt) / 60
            verdict = (.frozen, String(format: "The picture is frozen: identical to the previous deep probe's %.0f min earlier%@ (mean difference %.2f).",
                                       max(1, minutes.rounded()), still.onlyBand ? " apart from the on-screen clock" : "", still.mean))
            result.image?.frozen = true
        }

        if let (reason, message) = verdict {
            result.reason = reason
            result.message = message
        } else {
            result.message += note
        }
        return (result, changed ? BaselineRecord(streamId: id, baseline: entry.baseline, referenceJpeg: jpegForReference) : nil)
    }

    /// Blurred, obstructed or scene changed against the reference, or nil when the view matches.
    func scene(_ grid: LumaGrid, reference: LumaGrid, baseline: PictureBaseline, sharpness: Double?, thresholds: PictureThresholds,
               ignore: [PictureRegion]) -> (Reason, String)? {
        // Blur first: a soft lens also smooths the view into uniform areas, while a cover leaves the edges it
        // does not hide as steep as before (and a fully covered view has no edges, so no sharpness).
        if let now = sharpness, let then = baseline.referenceSharpness, then > 0, now / then < thresholds.blur {
            return (.blurred, String(format: "Sharpness %.2f is %.0f %% of the reference picture's %.2f — dirty, fogged or out-of-focus lens?",
                                     now, now / then * 100, then))
        }
        if let reference = baseline.reference, let covered = PictureChecks.structureCovered(grid, reference: reference, ignore: ignore),
           covered >= thresholds.obstruction {
            let coverage = PictureChecks.uniformCoverage(grid, ignore: ignore)
            return (.obstructed, String(format: "%.0f %% of the view's detail is hidden under uniform areas (%.0f %% of the picture is uniform, reference picture: %.0f %%) — paint, tape or something in front of the lens?",
                                        covered * 100, coverage * 100, (baseline.referenceCoverage ?? 0) * 100))
        }
        let taken = baseline.referenceAt.map { " of \(Self.clock($0, timeZone, withDate: true))" } ?? ""
        if let correlation = PictureChecks.edgeCorrelation(grid, reference, ignore: ignore), correlation < thresholds.scene {
            return (.sceneChanged, String(format: "The view no longer matches the reference picture%@ (edge correlation %.2f, expected ≥ %.2f) — camera moved, zoomed or blocked?",
                                          taken, correlation, thresholds.scene))
        }
        return nil
    }

    private func setReference(_ baseline: inout PictureBaseline, grid: LumaGrid, sharpness: Double?, at now: Date, by user: String?) {
        baseline.reference = grid
        baseline.referenceSharpness = sharpness
        baseline.referenceCoverage = PictureChecks.uniformCoverage(grid)
        baseline.referenceAt = now
        baseline.referenceBy = user
    }

    /// A profile from the learning probes: the last one's codec and size, the medians of the rates.
    static func learn(_ probes: [StreamProfile]) -> StreamProfile {
        func median(_ values: [Double]) -> Double? {
            let sorted = values.sorted()
            return sorted.isEmpty ? nil : sorted[sorted.count / 2]
        }
        var profile = probes.last ?? StreamProfile()
        profile.fps = median(probes.compactMap(\.fps))
        profile.bitrateBps = median(probes.compactMap(\.bitrateBps))
        profile.keyframeIntervalSeconds = median(probes.compactMap(\.keyframeIntervalSeconds))
        let audio = probes.compactMap(\.audio)
        profile.audio = audio.isEmpty ? nil : audio.filter { $0 }.count * 2 > audio.count
        return profile
    }

    static func rate(_ bps: Double) -> String {
        bps >= 1_000_000 ? String(format: "%.1f Mb/s", bps / 1_000_000) : String(format: "%.0f kb/s", bps / 1000)
    }

    static func clock(_ date: Date, _ zone: TimeZone, withDate: Bool = false) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = zone
        formatter.dateFormat = withDate ? "yyyy-MM-dd HH:mm" : "HH:mm"
        return formatter.string(from: date)
    }
}
