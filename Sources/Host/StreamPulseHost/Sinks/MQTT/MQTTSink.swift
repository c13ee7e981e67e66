import Foundation
import Logging
import StreamPulseCore
import Synchronization

/// Publishes per-stream status (retained) and state changes to an MQTT 3.1.1 broker, for Home Assistant
/// and the like. The monitor's own presence is `<prefix>/monitor/status`: "online" (retained) on connect,
/// "offline" as its last will. A small blocking client on the sink's own thread; reconnects as needed.
///
/// Topics: `<prefix>/streams/<id>/status` (retained JSON: status, reason, phase, since, pending),
/// `<prefix>/streams/<id>/events` (state changes, not retained).
public final class MQTTSink: Sink {
    public let name: String
    let config: MQTTOptions
    private let logger: Logger
    private let pool = BlockingPool(name: "mqtt", threads: 1, maxThreads: 1)
    private let client: Mutex<MQTTClient?> = Mutex(nil)
    private let lastStatus = Mutex<[String: String]>([:])
    private let clientID = "streampulse-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    public init(name: String, options: MQTTOptions, logger: Logger) {
        self.name = name
        self.config = options
        self.logger = logger
    }

    public func write(_ batch: [SinkEvent]) async throws {
        var messages: [(topic: String, payload: Data, retain: Bool)] = []
        for event in batch {
            switch event {
            case .result(let r):
                let status = StatusMessage(status: r.status.rawValue, pending: r.pending, reason: r.reason.rawValue, phase: r.phase?.rawValue, at: r.at)
                let key = "\(status.status)|\(status.pending)|\(status.reason)"
                // Retained status only when it changes: a broker keeps the last one for new subscribers.
                guard lastStatus.withLock({ $0.updateValue(key, forKey: r.streamId) }) != key else { continue }
                messages.append(("\(config.topicPrefix)/streams/\(r.streamId)/status", try Wire.encode(status), true))
            case .change(let c):
                let message = ChangeMessage(from: c.from.status.rawValue, to: c.to.status.rawValue, pending: c.to.pending,
                                            reason: c.to.reason.rawValue, message: c.to.message, at: c.at)
                messages.append(("\(config.topicPrefix)/streams/\(c.streamId)/events", try Wire.encode(message), false))
            case .streams:
                break
            }
        }
        if messages.isEmpty { return }
        let outgoing = messages
        let outcome: Result<Void, MQTTClient.Failure> = await pool.run { [self] in
            do {
                let client = try connectedClient()
                for m in outgoing { try client.publish(topic: m.topic, payload: Array(m.payload), qos: config.qos, retain: m.retain) }
                return .success(())
            } catch {
                self.client.withLock { $0 = nil }
                return .failure(error as? MQTTClient.Failure ?? .io("\(error)"))
            }
        }
        if case .failure(let failure) = outcome { throw failure }
    }

    public func close() async {
        _ = await pool.run { [self] in
            client.withLock { client in
                client?.disconnect()
                client = nil
            }
        }
    }

    /// Abandons the connection without DISCONNECT, as a crash would (the broker then sends the will).
    func dropConnectionForTest() {
        client.withLock { $0 = nil }
    }

    private func connectedClient() throws(MQTTClient.Failure) -> MQTTClient {
        if let existing = client.withLock({ $0 }) { return existing }
        let fresh = try MQTTClient.connect(
            host: config.host, port: config.port, clientID: clientID, credentials: config.credentials,
            will: (topic: "\(config.topicPrefix)/monitor/status", payload: Array("offline".utf8)))
        try fresh.publish(topic: "\(config.topicPrefix)/monitor/status", payload: Array("online".utf8), qos: 1, retain: true)
        client.withLock { $0 = fresh }
        logger.info("mqtt \(name): connected to \(config.host):\(config.port)")
        return fresh
    }

    struct StatusMessage: Encodable { var status: String; var pending: Bool; var reason: String; var phase: String?; var at: Date }
    struct ChangeMessage: Encodable { var from: String; var to: String; var pending: Bool; var reason: String; var message: String; var at: Date }
}
