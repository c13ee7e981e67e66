import Foundation
import Logging
import PluginABI
import StreamPulseCore
import Synchronization

/// A file in the plugins folder that was not loaded, and why.
public struct RefusedPlugin: Error, Sendable, Equatable {
    public var path: String
    public var refusal: PluginRefusal
    /// Whether the refusal came before dlopen, i.e. none of the file's code ran.
    public var beforeLoading: Bool

    public var message: String { "Plugin file \((path as NSString).lastPathComponent) refused: it \(refusal)." }
}

/// Loads probers from a plugins folder and routes URLs to them.
///
/// Checks, in order, each cheaper and safer than the next:
/// 1. read from the file, no code runs: ELF shared library for this CPU, the `.streampulse_abi` marker with a
///    supported protocol version, the `streampulse_plugin_entry_v1` export;
/// 2. `dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)` and the entry point's table (abi_version, struct_size);
/// 3. the static descriptor (name, schemes): a name or scheme already taken is refused. The prober itself is
///    created only at its first probe, so a refused plugin's prober never runs.
/// Libraries are never closed: unloading Swift code crashes later type lookups.
public final class PluginHost: Sendable {
    public static let supportedVersions: [UInt32] = [1]

    public let directory: String
    private let logger: Logger
    private let logBridge: PluginLogBridge
    private struct State {
        var plugins: [LoadedPlugin] = []
        var refused: [String: RefusedPlugin] = [:]
        var router = SchemeRouter()
        var seen: [String: FileIdentity] = [:]
    }
    private let state = Mutex(State())

    public init(directory: String, logger: Logger, scrubber: SecretScrubber = SecretScrubber()) {
        self.directory = directory
        self.logger = logger
        self.logBridge = PluginLogBridge(logger: logger, scrubber: scrubber)
    }

    public var plugins: [LoadedPlugin] { state.withLock { $0.plugins } }
    public var refused: [RefusedPlugin] { state.withLock { $0.refused.values.sorted { $0.path < $1.path } } }
    public var router: SchemeRouter { state.withLock { $0.router } }

    /// The plugin handling `url`'s scheme, or `protocolName` when given.
    public func plugin(for url: String, protocolName: String? = nil) -> LoadedPlugin? {
        state.withLock { state in
            let name = protocolName?.lowercased() ?? state.router.route(url)
            return state.plugins.first { $0.name == name }
        }
    }

    /// The loaded plugin with this name.
    public func plugin(named name: String) -> LoadedPlugin? {
        state.withLock { state in state.plugins.first { $0.name == name } }
    }

    /// Looks at every `*.so` in the folder not seen before (or changed) and loads what passes the checks.
    /// Returns the plugins loaded by this scan. Safe to call repeatedly (live drop-in).
    @discardableResult
    public func scan() -> [LoadedPlugin] {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { $0.hasSuffix(".so") && !$0.hasPrefix(".") }
                .sorted()
                .map { (directory as NSString).appendingPathComponent($0) }
        } catch {
            logger.error("Cannot read the plugins folder \(directory): \(error.localizedDescription)")
            return []
        }
        var loaded: [LoadedPlugin] = []
        for path in files {
            guard let identity = FileIdentity(path: path) else {
                // A dangling symlink or a file that vanished mid-scan: say so once.
                if state.withLock({ $0.refused[path] == nil }) {
                    refuse(RefusedPlugin(path: path, refusal: .unreadable(String(cString: strerror(errno))), beforeLoading: true), log: true)
                }
                continue
            }
            let previous = state.withLock { $0.seen[path] }
            if previous == identity { continue }
            state.withLock { $0.seen[path] = identity }
            if previous != nil, let current = plugins.first(where: { $0.path == path }) {
                // Code is never unloaded: a new build of a loaded plugin needs a restart.
                logger.warning("Plugin file \(path) changed on disk; restart to upgrade \(current.name) (plugin code is never unloaded).")
                refuse(RefusedPlugin(path: path, refusal: .replacedWhileLoaded, beforeLoading: true), log: false)
                continue
            }
            switch load(path: path, identity: identity) {
            case .success(let plugin):
                loaded.append(plugin)
                let d = plugin.descriptor
                logger.info("Loaded plugin \(d.name) \(d.version) (protocol \(d.protocolVersion)) for \(d.schemes.joined(separator: ", ")) from \(path)")
            case .failure(let refusal):
                refuse(refusal, log: true)
            }
        }
        return loaded
    }

    private func refuse(_ refusal: RefusedPlugin, log: Bool) {
        state.withLock { $0.refused[refusal.path] = refusal }
        if log { logger.error("\(refusal.message)") }
    }

    private func load(path: String, identity: FileIdentity) -> Result<LoadedPlugin, RefusedPlugin> {
        func refused(_ reason: PluginRefusal, before: Bool) -> Result<LoadedPlugin, RefusedPlugin> {
            .failure(RefusedPlugin(path: path, refusal: reason, beforeLoading: before))
        }
        // 1. From the file alone.
        let facts: PluginFileFacts
        do { facts = try ELFInspector.inspect(path: path) } catch { return refused(error, before: true) }
        guard let version = facts.abiVersion else { return refused(.notAPlugin, before: true) }
        guard Self.supportedVersions.contains(version) else {
            return refused(.protocolVersion(found: version, supported: Self.supportedVersions), before: true)
        }
        guard facts.hasEntryPointV1 else { return refused(.missingEntryPoint(PluginProtocol.entryPointV1), before: true) }

        // 2. Load. RTLD_NOW turns a missing symbol into a clean dlopen error instead of a later crash.
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            return refused(.loadFailed(String(cString: dlerror())), before: false)
        }
        guard let symbol = dlsym(handle, PluginProtocol.entryPointV1) else {
            return refused(.missingEntryPoint(PluginProtocol.entryPointV1), before: false)
        }
        let entry = unsafeBitCast(symbol, to: sp_plugin_entry_v1_fn.self)
        guard let table = entry() else { return refused(.badDescriptor("the entry point returned no table"), before: false) }
        guard table.pointee.abi_version == version,
              table.pointee.struct_size >= UInt32(MemoryLayout<sp_plugin_v1>.size)
        else {
            return refused(.badDescriptor("its table says protocol \(table.pointee.abi_version), size \(table.pointee.struct_size)"), before: false)
        }

        // 3. The descriptor.
        guard let describe = table.pointee.describe, let json = describe(table.pointee.context) else {
            return refused(.badDescriptor("describe returned nothing"), before: false)
        }
        let descriptor: PluginDescriptor
        do {
            descriptor = try Wire.decode(PluginDescriptor.self, from: Data(String(cString: json).utf8))
        } catch {
            return refused(.badDescriptor("\(error)"), before: false)
        }
        guard !descriptor.name.isEmpty, !descriptor.schemes.isEmpty else {
            return refused(.badDescriptor("a plugin needs a name and at least one scheme"), before: false)
        }
        guard descriptor.protocolVersion == Int(version) else {
            return refused(.protocolVersion(found: UInt32(max(0, descriptor.protocolVersion)), supported: Self.supportedVersions), before: false)
        }
        let plugin = LoadedPlugin(path: path, descriptor: descriptor, fileIdentity: identity, table: table, scrubber: logBridge.scrubber)
        let outcome: PluginRefusal? = state.withLock { state in
            if state.plugins.contains(where: { $0.name == descriptor.name }) { return .duplicateName(descriptor.name) }
            if let conflict = state.router.conflict(for: descriptor.schemes) {
                return .duplicateScheme(scheme: conflict.scheme, ownedBy: conflict.owner)
            }
            _ = state.router.claim(descriptor.schemes, by: descriptor.name)
            state.plugins.append(plugin)
            return nil
        }
        if let outcome { return refused(outcome, before: false) }
        logBridge.install(on: table, pluginName: descriptor.name)
        return .success(plugin)
    }
}

/// Known secrets to blank out of anything a plugin logs; the config loader keeps it current.
public final class SecretScrubber: Sendable {
    private let secrets = Mutex<[String]>([])
    public init() {}
    public func replace(with secrets: [String]) { self.secrets.withLock { $0 = secrets.filter { !$0.isEmpty } } }
    /// The text without known secrets and with control characters (ANSI escapes from a hostile camera,
    /// newlines that would forge log lines) shown as `\u{…}` escapes.
    public func scrub(_ text: String, extra: [String?] = []) -> String {
        Self.escapingControls(URLRedaction.scrub(text, secrets: secrets.withLock { $0 } + extra.compactMap { $0 }))
    }

    /// Control and format characters as `\u{…}` escapes; with `backslashes`, `\` is doubled too, so a typed
    /// `\u{0}` cannot pass for an escaped NUL.
    static func escapingControls(_ text: String, backslashes: Bool = false) -> String {
        let special = { (c: Unicode.Scalar) in CharacterSet.controlCharacters.contains(c) || (backslashes && c == "\\") }
        guard text.unicodeScalars.contains(where: special) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar == "\\" && backslashes {
                out += "\\\\"
            } else if special(scalar) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// Routes plugin log lines into the host logger, scrubbed of known secrets.
final class PluginLogBridge: Sendable {
    let logger: Logger
    let scrubber: SecretScrubber

    init(logger: Logger, scrubber: SecretScrubber) {
        self.logger = logger
        self.scrubber = scrubber
    }

    final class Sink: Sendable {
        let bridge: PluginLogBridge
        let name: String
        init(bridge: PluginLogBridge, name: String) { self.bridge = bridge; self.name = name }
    }

    func install(on table: UnsafePointer<sp_plugin_v1>, pluginName: String) {
        // Retained forever, like the plugin itself.
        let user = Unmanaged.passRetained(Sink(bridge: self, name: pluginName)).toOpaque()
        table.pointee.set_log(table.pointee.context, user) { user, level, message in
            let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
            let text = sink.bridge.scrubber.scrub(message.map { String(cString: $0) } ?? "")
            let level: Logger.Level = switch level {
            case 0: .trace
            case 1: .debug
            case 2: .info
            case 3: .notice
            case 4: .warning
            case 5: .error
            default: .critical
            }
            sink.bridge.logger.log(level: level, "\(text)", metadata: ["plugin": "\(sink.name)"])
        }
    }
}
