import Foundation
import Logging
import NIOSSL
import StreamPulseCore
import Synchronization

/// Publishes per-stream status (retained) and state changes to an MQTT 3.1.1 broker, for Home Assistant
/// and the like. The monitor's own presence is `<prefix>/monitor/status`: "online" (retained) on connect,
/// "offline" as its last will and, retained, when the sink closes on a graceful stop. Reconnects on the
/// next write after the connection is lost.
///
/// Topics: `<prefix>/streams/<id>/status` (retained JSON: status, reason, phase, at, pending),
/// `<prefix>/streams/<id>/events` (state changes, not retained). Stream ids are topic-safe: `validate`
/// refuses ids with `/`, `#` or `+`.
///
/// With `discovery: true` each stream also gets Home Assistant discovery configs (retained): a
/// `binary_sensor` of class `problem` (on unless the stream is ok) and a `sensor` with the status word,
/// both reading the status topic and marked unavailable while the monitor is offline. A stream removed
/// from the config has its configs cleared (empty retained payloads), so Home Assistant drops the entities.
public final class MQTTSink: Sink {
    public let name: String
    let config: MQTTOptions
    private let logger: Logger
    private let tls: TLSConfiguration?
    private let client: Mutex<MQTTClient?> = Mutex(nil)
    private struct State {
        var lastStatus: [String: String] = [:]
        /// Streams announced to Home Assistant (id → name), to announce again after a reconnect.
        var announced: [String: String] = [:]
    }
    private let state = Mutex(State())
    private let clientID = "streampulse-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    public init(name: String, options: MQTTOptions, logger: Logger) throws {
        self.name = name
        self.config = options
        self.logger = logger
        if options.tls {
            do { tls = try TLSTrust.client(caFile: options.caFile) } catch { throw SinkSetupError(message: "mqtt sink '\(name)': \(error)") }
        } else {
            self.tls = nil
        }
    }

    private var presenceTopic: String { "\(config.topicPrefix)/monitor/status" }
    private func statusTopic(_ id: String) -> String { "\(config.topicPrefix)/streams/\(id)/status" }

    public func write(_ batch: [SinkEvent]) async throws {
        var messages: [Message] = []
        for event in batch {
            switch event {
            case .result(let r):
                let status = StatusMessage(status: r.status.rawValue, pending: r.pending, reason: r.reason.rawValue, phase: r.phase?.rawValue, at: r.at)
                let key = "\(status.status)|\(status.pending)|\(status.reason)"
                // Retained status only when it changes: a broker keeps the last one for new subscribers.
                guard state.withLock({ $0.lastStatus.updateValue(key, forKey: r.streamId) }) != key else { continue }
                messages.append(Message(topic: statusTopic(r.streamId), payload: Array(try Wire.encode(status)), retain: true))
            case .change(let c):
                let message = ChangeMessage(from: c.from.status.rawValue, to: c.to.status.rawValue, pending: c.to.pending,
                                            reason: c.to.reason.rawValue, message: c.to.message, at: c.at)
                messages.append(Message(topic: "\(config.topicPrefix)/streams/\(c.streamId)/events", payload: Array(try Wire.encode(message)), retain: false))
            case .streams(let streams, _):
                guard config.discovery else { continue }
                messages += try discoveryChanges(streams)
            case .baseline:
                continue
            }
        }
        if messages.isEmpty { return }
        do {
            let client = try await connectedClient()
            for m in messages { try await client.publish(topic: m.topic, payload: m.payload, qos: config.qos, retain: m.retain) }
        } catch {
            if let lost = client.withLock({ client in defer { client = nil }; return client }) { lost.abandon() }
            throw error
        }
    }

    /// On a graceful stop: "offline" retained (a new subscriber must not read a stale "online"), then DISCONNECT.
    public func close() async {
        guard let client = client.withLock({ client in defer { client = nil }; return client }) else { return }
        if client.isActive {
            do {
                try await client.publish(topic: presenceTopic, payload: Array("offline".utf8), qos: 1, retain: true)
            } catch {
                logger.warning("mqtt \(name): could not publish 'offline' on stop: \(error)")
            }
        }
        await client.disconnect()
    }

    /// Abandons the connection without DISCONNECT, as a crash would (the broker then sends the will).
    func dropConnectionForTest() {
        client.withLock { client in
            client?.abandon()
            client = nil
        }
    }

    private func connectedClient() async throws -> MQTTClient {
        if let existing = client.withLock({ $0 }), existing.isActive { return existing }
        let fresh = try await MQTTClient.connect(MQTTClient.Endpoint(
            host: config.host, port: config.port, tls: tls, clientID: clientID, credentials: config.credentials,
            keepAlive: config.keepAlive, will: (topic: presenceTopic, payload: Array("offline".utf8))))
        do {
            try await fresh.publish(topic: presenceTopic, payload: Array("online".utf8), qos: 1, retain: true)
            // A broker without persistence forgets retained messages when it restarts: announce again.
            for (id, name) in state.withLock({ $0.announced }).sorted(by: { $0.key < $1.key }) {
                for m in try discoveryConfigs(id: id, name: name) { try await fresh.publish(topic: m.topic, payload: m.payload, qos: config.qos, retain: true) }
            }
        } catch {
            fresh.abandon()
            throw error
        }
        client.withLock { $0 = fresh }
        logger.info("mqtt \(name): connected to \(config.host):\(config.port)\(tls == nil ? "" : " (TLS)")")
        return fresh
    }

    // MARK: Home Assistant discovery

    private func discoveryChanges(_ streams: [StreamSnapshot]) throws -> [Message] {
        let wanted = Dictionary(streams.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
        let (added, removed) = state.withLock { state -> ([(String, String)], [String]) in
            let added = wanted.filter { state.announced[$0.key] != $0.value }.map { ($0.key, $0.value) }
            let removed = state.announced.keys.filter { wanted[$0] == nil }
            state.announced = wanted
            return (added, removed)
        }
        var messages: [Message] = []
        for (id, name) in added.sorted(by: { $0.0 < $1.0 }) { messages += try discoveryConfigs(id: id, name: name) }
        for id in removed.sorted() {
            for topic in discoveryTopics(id: id) { messages.append(Message(topic: topic, payload: [], retain: true)) }
        }
        return messages
    }

    /// `<discovery_prefix>/<component>/streampulse/<object id>/config` for the problem and status entities.
    func discoveryTopics(id: String) -> [String] {
        let object = Self.objectID(id)
        return ["\(config.discoveryPrefix)/binary_sensor/streampulse/\(object)_problem/config",
                "\(config.discoveryPrefix)/sensor/streampulse/\(object)_status/config"]
    }

    private func discoveryConfigs(id: String, name: String) throws -> [Message] {
        let topics = discoveryTopics(id: id)
        let object = Self.objectID(id)
        let device = Discovery.Device(identifiers: ["streampulse_\(object)"], name: name, manufacturer: "StreamPulse", model: "Video stream")
        let problem = Discovery(
            name: "Problem", uniqueID: "streampulse_\(object)_problem", stateTopic: statusTopic(id),
            valueTemplate: "{{ 'OFF' if value_json.status == 'ok' else 'ON' }}", deviceClass: "problem",
            availabilityTopic: presenceTopic, jsonAttributesTopic: statusTopic(id), device: device)
        let status = Discovery(
            name: "Status", uniqueID: "streampulse_\(object)_status", stateTopic: statusTopic(id),
            valueTemplate: "{{ value_json.status }}", deviceClass: nil,
            availabilityTopic: presenceTopic, jsonAttributesTopic: statusTopic(id), device: device)
        return [Message(topic: topics[0], payload: Array(try Wire.encode(problem)), retain: true),
                Message(topic: topics[1], payload: Array(try Wire.encode(status)), retain: true)]
    }

    /// Home Assistant object ids are `[A-Za-z0-9_-]`; other characters become `_` and a short hash of the
    /// id keeps two ids that differ only there apart.
    static func objectID(_ id: String) -> String {
        let safe = String(id.unicodeScalars.map { scalar -> Character in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || scalar == "_" || scalar == "-") ? Character(scalar) : "_"
        })
        guard safe != id else { return id }
        var hash: UInt32 = 2_166_136_261  // FNV-1a
        for byte in id.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return safe + "_" + String(hash, radix: 16)
    }

    struct Message: Sendable { var topic: String; var payload: [UInt8]; var retain: Bool }
    struct StatusMessage: Encodable { var status: String; var pending: Bool; var reason: String; var phase: String?; var at: Date }
    struct ChangeMessage: Encodable { var from: String; var to: String; var pending: Bool; var reason: String; var message: String; var at: Date }
    struct Discovery: Encodable {
        struct Device: Encodable { var identifiers: [String]; var name: String; var manufacturer: String; var model: String }
        var name: String
        var uniqueID: String
        var stateTopic: String
        var valueTemplate: String
        var deviceClass: String?
        var availabilityTopic: String
        var payloadAvailable = "online"
        var payloadNotAvailable = "offline"
        var jsonAttributesTopic: String
        var device: Device
        enum CodingKeys: String, CodingKey {
            case name, device
            case uniqueID = "unique_id", stateTopic = "state_topic", valueTemplate = "value_template", deviceClass = "device_class"
            case availabilityTopic = "availability_topic", payloadAvailable = "payload_available"
            case payloadNotAvailable = "payload_not_available", jsonAttributesTopic = "json_attributes_topic"
        }
    }
}
