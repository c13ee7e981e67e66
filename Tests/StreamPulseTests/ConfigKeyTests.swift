import Foundation
import Testing
@testable import StreamPulseHost

/// One declaration per setting (`SettingKeys`): the loader reads each, and the schema and the docs agree
/// with the declarations. `STREAMPULSE_WRITE_REFERENCE=1 swift test --filter ConfigKeyTests` rewrites both
/// files from the declarations.
@Suite(.serialized) struct ConfigKeyTests {
    static let rewrite = ProcessInfo.processInfo.environment["STREAMPULSE_WRITE_REFERENCE"] == "1"

    /// `web.max_previews: 1` as nested YAML under `settings:`.
    static func yaml(_ key: SettingKey, _ value: String) -> String {
        let parts = key.name.split(separator: ".")
        var text = "settings:\n"
        for (depth, part) in parts.enumerated() {
            text += String(repeating: "  ", count: depth + 1) + part + ":" + (depth == parts.count - 1 ? " \(value)\n" : "\n")
        }
        return text
    }

    @Test(arguments: SettingKeys.all.map(\.name))
    func eachKey_isReadByTheLoader_andChangesOnlyItself(name: String) throws {
        let key = try #require(SettingKeys.all.first { $0.name == name })
        let result = ConfigLoader(environment: [:]).load(yaml: Self.yaml(key, key.sample), file: "c.yaml", baseDirectory: "/nonexistent")
        #expect(result.errors.isEmpty, "\(result.errors)")
        let settings = try #require(result.config).settings
        #expect(key.differs(settings, Settings()), "\(name): the sample \(key.sample) did not change it")
        for other in SettingKeys.all where other.name != name {
            #expect(!other.differs(settings, Settings()), "\(name) also changed \(other.name)")
        }
        let asDefault = ConfigLoader(environment: [:]).load(yaml: Self.yaml(key, key.defaultValue), file: "c.yaml", baseDirectory: "/")
        #expect(asDefault.config.map { !key.differs($0.settings, Settings()) } == true, "\(name): the documented default is not the default")
    }

    @Test func theDeclarations_coverEverySettingsField() {
        // Every stored property of Settings has a declaration (Mirror lists them).
        #expect(Mirror(reflecting: Settings()).children.count == SettingKeys.all.count)
    }

    @Test func theSchema_declaresEverySetting_asTheRegistryDoes() throws {
        let path = TestEnvironment.root + "/config/streampulse.schema.json"
        var schema = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        var properties = try #require(schema["properties"] as? [String: Any])
        let expected = SettingKeys.schema()
        if Self.rewrite {
            properties["settings"] = expected
            schema["properties"] = properties
            let data = try JSONSerialization.data(withJSONObject: schema, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try (String(decoding: data, as: UTF8.self) + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
        #expect(NSDictionary(dictionary: properties["settings"] as? [String: Any] ?? [:]).isEqual(to: expected),
                "config/streampulse.schema.json's settings differ from SettingKeys; rewrite with STREAMPULSE_WRITE_REFERENCE=1")
    }

    @Test func theDocs_listEverySetting_withItsDefaultAndReloadBehaviour() throws {
        let path = TestEnvironment.root + "/docs/configuration.md"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let begin = "<!-- settings table: generated from SettingKeys -->\n", end = "\n<!-- end of settings table -->"
        let table = SettingKeys.markdownTable()
        if Self.rewrite, let a = text.range(of: begin), let b = text.range(of: end, range: a.upperBound..<text.endIndex) {
            text.replaceSubrange(a.upperBound..<b.lowerBound, with: table)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        #expect(text.contains(begin + table + end), "docs/configuration.md's settings table differs; rewrite with STREAMPULSE_WRITE_REFERENCE=1")
    }

    @Test func theSchema_validatesTheBundledConfig_withPythonJsonschema() async throws {
        let script = """
            import json, sys, yaml, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.validate(yaml.safe_load(open(sys.argv[2])), schema)
            bad = yaml.safe_load(open(sys.argv[2])); bad.setdefault("settings", {})["intervall"] = "5s"
            try:
                jsonschema.validate(bad, schema); print("a misspelt key passed")
            except jsonschema.ValidationError:
                print("valid")
            """
        // The bundled config, and the alerts example (notify channels and rules, maintenance windows).
        for file in ["/config/config.yaml", "/examples/alerts.yaml"] {
            let run = try await TestEnvironment.run([
                "-c", script, TestEnvironment.root + "/config/streampulse.schema.json", TestEnvironment.root + file,
            ], executable: "/usr/bin/python3")
            #expect(run.status == 0, "\(file): \(run.stderr)")
            #expect(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "valid", "\(file): \(run.stdout) \(run.stderr)")
        }
    }
}
