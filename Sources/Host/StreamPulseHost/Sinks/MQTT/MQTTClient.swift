import Foundation
import StreamPulseCore

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
