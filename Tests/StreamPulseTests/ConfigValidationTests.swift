import Foundation
import Testing
@testable import StreamPulseHost

/// The `validate` gaps found against real configs (issue #13 item 11): each mistake is named where it is,
/// in words that say what to do, and one mistake is reported once.
@Suite struct ConfigValidationTests {
    func load(_ yaml: String, base: String = "/nonexistent") -> ConfigLoadResult {
        ConfigLoader(environment: [:], knownSchemes: ["rtsp", "http"]).load(yaml: yaml, file: "config.yaml", baseDirectory: base)
    }

    func errors(_ result: ConfigLoadResult) -> [String] { result.errors.map(\.description) }

    @Test func aTabInTheIndentation_isNamedAsATab_atItsLine() {
        let result = load("streams:\n  - id: a\n\turl: rtsp://h/x\n")
        #expect(errors(result).count == 1)
        #expect(errors(result).first?.hasPrefix("config.yaml:3:1: error: a tab in the indentation; YAML indents with spaces only") == true,
                "\(errors(result))")
    }

    @Test func aDuplicateKey_pointsAtTheSecondOccurrence() {
        let result = load("streams:\n  - id: a\n    url: rtsp://h/x\n    name: A\n    url: rtsp://h/y\n  - id: b\n    url: rtsp://h/z\n")
        #expect(errors(result) == ["config.yaml:5:5: error: duplicate key 'url' (first at line 3); each key may appear once in a mapping"])
    }

    @Test func aDuplicateTopLevelSection_pointsAtIt() {
        let result = load("streams:\n  - { id: a, url: rtsp://h/x }\nstreams:\n  - { id: b, url: rtsp://h/y }\n")
        #expect(errors(result).first?.hasPrefix("config.yaml:3:1: error: duplicate key 'streams' (first at line 1)") == true, "\(errors(result))")
    }

    @Test func aBrokenCredentialsEntry_isReportedOnce_notAgainAsUnknownByItsStreams() {
        let result = load("""
            credentials:
              cam: { username: admin, pasword: "${X}" }
            streams:
              - { id: a, url: rtsp://h/x, credentials: cam }
              - { id: b, url: rtsp://h/y, credentials: cam }
              - { id: c, url: rtsp://h/z, credentials: cma }
            """)
        let messages = result.errors.map(\.message)
        #expect(messages.contains("unknown key 'pasword'; did you mean 'password'?"))
        #expect(messages.contains { $0.hasPrefix("credentials 'cam': missing password") })
        // Only the real typo in a stream is "unknown credentials".
        #expect(messages.filter { $0.hasPrefix("unknown credentials") } == ["unknown credentials 'cma'; did you mean 'cam'?"], "\(messages)")
    }

    @Test func aTypoInTheSecretsFile_isNamedAtItsLineInThatFile_withoutItsValue() throws {
        let dir = TestEnvironment.temporaryDirectory("secrets")
        try "cam:\n  username: admin\n  pasword: s3cret-value\n".write(toFile: dir + "/secrets.yaml", atomically: true, encoding: .utf8)
        chmod(dir + "/secrets.yaml", 0o600)
        let result = load("credentials:\n  cam: {}\nstreams:\n  - { id: a, url: rtsp://h/x, credentials: cam }\n", base: dir)
        let lines = errors(result)
        #expect(lines.contains("\(dir)/secrets.yaml:3:3: error: 'cam': unknown key 'pasword'; did you mean 'password'?"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("config.yaml:2:8: error: credentials 'cam': missing password") })
        #expect(!lines.joined().contains("s3cret-value"))
    }

    @Test func aMissingSecretsFile_isNamed() {
        let result = load("settings:\n  secrets_file: nothere.yaml\ncredentials:\n  cam: {}\n")
        #expect(errors(result) == [
            "config.yaml:4:8: error: credentials 'cam': missing username and password (not in config.yaml or the environment, and the secrets file /nonexistent/nothere.yaml does not exist)",
        ])
    }

    @Test func tagsWrittenAsOneString_areAnError_thatShowsTheList() {
        let result = load("streams:\n  - { id: a, url: rtsp://h/x, tags: entrance }\n")
        #expect(result.errors.map(\.message) == ["tags must be a list: tags: [entrance]"])
    }

    @Test(arguments: [
        ("black: 300", "black: 300 is out of range (a mean luma from 0 to 255)"),
        ("frozen: -1", "frozen: -1 is out of range (a mean luma difference from 0 to 255)"),
        ("min_fps: 500", "min_fps: 500 is out of range (frames per second from 0 to 240)"),
        ("min_fps: nan", "min_fps: nan is out of range (frames per second from 0 to 240)"),
        ("black: 1e400", "black: 1e400 is out of range (a mean luma from 0 to 255)"),
    ])
    func thresholdsOutOfRange_areErrors(threshold: String, message: String) {
        let result = load("streams:\n  - { id: a, url: rtsp://h/x, thresholds: { \(threshold) } }\n")
        #expect(result.errors.map(\.message) == [message])
    }

    @Test func thresholdsInRange_load() throws {
        let result = load("streams:\n  - { id: a, url: rtsp://h/x, thresholds: { black: 255, frozen: 0, min_fps: 0.5 } }\n")
        #expect(result.errors.isEmpty)
        let t = try #require(result.config?.streams.first?.thresholds)
        #expect(t.black == 255 && t.frozen == 0 && t.minFps == 0.5)
    }

    @Test(arguments: [("b/c", "'/'"), ("d#e", "'#'"), ("h+", "'+'"), ("f g", "a space"), ("q?x", "'?'"), ("p%20", "'%'")])
    func streamIdsThatBreakTopicsOrURLs_areRefused(id: String, what: String) {
        let result = load("streams:\n  - { id: \"\(id)\", url: rtsp://h/x }\n")
        #expect(result.errors.map(\.message) == [
            "stream id '\(id)' contains \(what); ids become MQTT topics, URLs and file names, so use letters, digits, '-', '_', '.' or ':'",
        ])
    }

    @Test func ordinaryIds_areAccepted() {
        let result = load("streams:\n  - { id: lobby-door_2.main, url: rtsp://h/x }\n  - { id: \"nvr1:ch3\", url: rtsp://h/y }\n  - { id: Eingang-Süd, url: rtsp://h/z }\n")
        #expect(result.errors.isEmpty, "\(result.errors)")
    }
}
