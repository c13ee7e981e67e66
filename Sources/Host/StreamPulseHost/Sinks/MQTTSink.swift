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
    let config: SinkConfig
    private let logger: Logger
    private let pool = BlockingPool(name: "mqtt", threads: 1, maxThreads: 1)
    private let client: Mutex<MQTTClient?> = Mutex(nil)
    private let lastStatus = Mutex<[String: String]>([:])
    private let clientID = "streampulse-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    public init(config: SinkConfig, logger: Logger) {
        self.name = config.name
        self.config = config
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

/// The few MQTT 3.1.1 packets a publisher needs: CONNECT/CONNACK, PUBLISH (QoS 0/1)/PUBACK and DISCONNECT
/// (no PINGREQ yet: a broker drops a publisher that stays quiet for 1.5× its keep-alive, issue #15). Blocking; every call bounded by a deadline.
final class MQTTClient: @unchecked Sendable {
    enum Failure: Error, CustomStringConvertible {
        case connect(String), refused(UInt8), protocolError(String), io(String)
        var description: String {
            switch self {
            case .connect(let why): "cannot connect to the broker: \(why)"
            case .refused(let code): "the broker refused the connection (CONNACK code \(code))"
            case .protocolError(let why): "MQTT protocol error: \(why)"
            case .io(let why): "MQTT connection failed: \(why)"
            }
        }
    }

    private let connection: TCPConnection
    private var nextPacketID: UInt16 = 1
    private var buffer: [UInt8] = []

    private init(connection: TCPConnection) { self.connection = connection }

    static func connect(host: String, port: Int, clientID: String, credentials: CredentialRef?,
                        will: (topic: String, payload: [UInt8])) throws(Failure) -> MQTTClient {
        let connection: TCPConnection
        do { connection = try TCPConnection(host: host, port: port, clock: ProbeClock(timeoutMs: 5000)) } catch { throw .connect("\(error)") }
        let client = MQTTClient(connection: connection)
        // Flags: clean session, will (QoS 1, retained), user name, password.
        var flags: UInt8 = 0x02 | 0x04 | 0x08 | 0x20
        var payload = string(clientID) + string(will.topic) + lengthPrefixed(will.payload)
        if let credentials {
            flags |= 0x80 | 0x40
            payload += string(credentials.username) + string(credentials.password)
        }
        let variable: [UInt8] = string("MQTT") + [4, flags, 0, 60]  // protocol level 4, keep-alive 60 s
        try client.send(type: 0x10, body: variable + payload)
        let (type, body) = try client.receive(deadlineMs: 5000)
        guard type >> 4 == 2, body.count >= 2 else { throw .protocolError("expected CONNACK") }
        guard body[1] == 0 else { throw .refused(body[1]) }
        return client
    }

    func publish(topic: String, payload: [UInt8], qos: Int, retain: Bool) throws(Failure) {
        var header: UInt8 = 0x30 | (retain ? 0x01 : 0)
        var body = Self.string(topic)
        var id: UInt16 = 0
        if qos >= 1 {
            header |= 0x02
            id = nextPacketID
            nextPacketID = nextPacketID == UInt16.max ? 1 : nextPacketID + 1
            body += [UInt8(id >> 8), UInt8(id & 0xFF)]
        }
        try send(type: header, body: body + payload)
        guard qos >= 1 else { return }
        while true {
            let (type, ack) = try receive(deadlineMs: 5000)
            if type >> 4 == 4, ack.count >= 2, UInt16(ack[0]) << 8 | UInt16(ack[1]) == id { return }
        }
    }

    func disconnect() {
        try? send(type: 0xE0, body: [])
    }

    private func send(type: UInt8, body: [UInt8]) throws(Failure) {
        connection.setDeadline(ProbeClock(timeoutMs: 5000))
        var packet = [type]
        var length = body.count
        repeat {
            var byte = UInt8(length % 128)
            length /= 128
            if length > 0 { byte |= 0x80 }
            packet.append(byte)
        } while length > 0
        do { try connection.write(packet + body) } catch { throw .io("\(error)") }
    }

    private func receive(deadlineMs: Int) throws(Failure) -> (UInt8, [UInt8]) {
        connection.setDeadline(ProbeClock(timeoutMs: deadlineMs))
        while true {
            if buffer.count >= 2 {
                var multiplier = 1, length = 0, index = 1
                var complete = false
                while index < buffer.count, index <= 4 {
                    length += Int(buffer[index] & 0x7F) * multiplier
                    multiplier *= 128
                    if buffer[index] & 0x80 == 0 { complete = true; break }
                    index += 1
                }
                if complete, buffer.count >= index + 1 + length {
                    let type = buffer[0]
                    let body = Array(buffer[(index + 1)..<(index + 1 + length)])
                    buffer.removeFirst(index + 1 + length)
                    return (type, body)
                }
            }
            do { buffer += try connection.read(maximum: 4096) } catch { throw .io("\(error)") }
        }
    }

    private static func string(_ text: String) -> [UInt8] { lengthPrefixed(Array(text.utf8)) }
    private static func lengthPrefixed(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes }
}
