import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import StreamPulseCore

/// The MQTT 3.1.1 packets a publisher needs — CONNECT/CONNACK, PUBLISH (QoS 0/1)/PUBACK, PINGREQ/PINGRESP
/// and DISCONNECT — on a SwiftNIO channel, with TLS through NIOSSL when configured.
///
/// Keep-alive is the channel's own business: an `IdleStateHandler` notices when nothing has been written
/// for half the keep-alive and the session handler sends PINGREQ; a broker that does not answer within the
/// keep-alive gets the connection closed (the sink then reconnects on its next write). So a quiet fleet no
/// longer makes the broker drop the monitor and publish its "offline" will.
final class MQTTClient: Sendable {
    enum Failure: Error, CustomStringConvertible {
        case connect(String), refused(UInt8), protocolError(String), io(String), timeout(String)
        var description: String {
            switch self {
            case .connect(let why): "cannot connect to the broker: \(why)"
            case .refused(let code): "the broker refused the connection (CONNACK code \(code)\(Self.meaning(code)))"
            case .protocolError(let why): "MQTT protocol error: \(why)"
            case .io(let why): "MQTT connection failed: \(why)"
            case .timeout(let what): "the broker did not answer \(what) within 5 s"
            }
        }
        private static func meaning(_ code: UInt8) -> String {
            switch code {
            case 4: ": bad user name or password"
            case 5: ": not authorised"
            default: ""
            }
        }
    }

    /// Where and how to connect.
    struct Endpoint: Sendable {
        var host: String
        var port: Int
        /// nil: plain TCP.
        var tls: TLSConfiguration?
        var clientID: String
        var credentials: CredentialRef?
        var keepAlive: Duration
        var will: (topic: String, payload: [UInt8])
    }

    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    /// Whether the connection is still open (a broker that stopped answering pings has it closed).
    var isActive: Bool { channel.isActive }

    static func connect(_ endpoint: Endpoint) async throws(Failure) -> MQTTClient {
        let keepAliveSeconds = max(1, min(Int(endpoint.keepAlive.components.seconds), 65_535))
        let sslContext: NIOSSLContext?
        do { sslContext = try endpoint.tls.map { try NIOSSLContext(configuration: $0) } } catch { throw .connect("TLS setup: \(error)") }
        // SNI and name checks take a host name; for an IP literal NIOSSL checks the certificate's IP instead.
        let serverName = endpoint.host.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") || (48...57).contains($0) || (97...102).contains($0) })
            ? nil : endpoint.host
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if let sslContext {
                            try pipeline.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                        }
                        try pipeline.addHandler(IdleStateHandler(writeTimeout: .seconds(Int64(max(1, keepAliveSeconds / 2)))))
                        try pipeline.addHandler(ByteToMessageHandler(MQTTFrameDecoder()))
                        try pipeline.addHandler(MQTTSessionHandler(pingTimeout: .seconds(Int64(keepAliveSeconds))))
                    }
                }
                .connect(host: endpoint.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: endpoint.port).get()
        } catch {
            throw .connect("\(error)")
        }
        let client = MQTTClient(channel: channel)
        // Flags: clean session, will (QoS 1, retained), user name, password.
        var flags: UInt8 = 0x02 | 0x04 | 0x08 | 0x20
        var payload = MQTTPacket.string(endpoint.clientID) + MQTTPacket.string(endpoint.will.topic) + MQTTPacket.lengthPrefixed(endpoint.will.payload)
        if let credentials = endpoint.credentials {
            flags |= 0x80 | 0x40
            payload += MQTTPacket.string(credentials.username) + MQTTPacket.string(credentials.password)
        }
        let variable: [UInt8] = MQTTPacket.string("MQTT") + [4, flags, UInt8(keepAliveSeconds >> 8), UInt8(keepAliveSeconds & 0xFF)]
        let acked = channel.eventLoop.makePromise(of: UInt8.self)
        let code: UInt8
        do {
            try await channel.writeAndFlush(MQTTRequest.connect(MQTTPacket.frame(type: 0x10, body: variable + payload), acked: acked))
            code = try await acked.futureResult.get()
        } catch {
            // A write that failed before reaching the handler (TLS refused, channel closed) left the promise
            // with no owner: fail it here (a second completion is ignored) instead of leaking it.
            acked.fail(error)
            channel.close(promise: nil)
            throw error as? Failure ?? .io("\(error)")
        }
        guard code == 0 else {
            channel.close(promise: nil)
            throw .refused(code)
        }
        return client
    }

    /// Publishes one message; with QoS 1 returns once the broker has acknowledged it.
    func publish(topic: String, payload: [UInt8], qos: Int, retain: Bool) async throws(Failure) {
        let acked = channel.eventLoop.makePromise(of: Void.self)
        do {
            try await channel.writeAndFlush(MQTTRequest.publish(topic: topic, payload: payload, qos: qos, retain: retain, acked: acked))
            try await acked.futureResult.get()
        } catch {
            acked.fail(error)
            throw error as? Failure ?? .io("\(error)")
        }
    }

    /// Sends DISCONNECT (the broker then discards the will) and closes.
    func disconnect() async {
        try? await channel.writeAndFlush(MQTTRequest.disconnect)
        try? await channel.close()
    }

    /// Closes without DISCONNECT, as a crash would (the broker then publishes the will).
    func abandon() {
        channel.close(promise: nil)
    }
}

/// What the client asks its channel to send.
enum MQTTRequest: Sendable {
    case connect([UInt8], acked: EventLoopPromise<UInt8>)
    case publish(topic: String, payload: [UInt8], qos: Int, retain: Bool, acked: EventLoopPromise<Void>)
    case disconnect
}

/// Byte-level packet helpers (MQTT 3.1.1 §1.5, §2.2).
enum MQTTPacket {
    static func frame(type: UInt8, body: [UInt8]) -> [UInt8] {
        var packet = [type]
        var length = body.count
        repeat {
            var byte = UInt8(length % 128)
            length /= 128
            if length > 0 { byte |= 0x80 }
            packet.append(byte)
        } while length > 0
        return packet + body
    }

    static func string(_ text: String) -> [UInt8] { lengthPrefixed(Array(text.utf8)) }
    static func lengthPrefixed(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes }
}

/// One received packet: its first byte and its body.
struct MQTTFrame {
    var type: UInt8
    var body: ByteBuffer
}

/// Cuts the byte stream into packets (fixed header, remaining length up to four bytes).
struct MQTTFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = MQTTFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let start = buffer.readerIndex
        guard let type = buffer.getInteger(at: start, as: UInt8.self) else { return .needMoreData }
        var length = 0, multiplier = 1, index = 1
        while true {
            guard index <= 4 else { throw MQTTClient.Failure.protocolError("remaining length longer than four bytes") }
            guard let byte = buffer.getInteger(at: start + index, as: UInt8.self) else { return .needMoreData }
            length += Int(byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if byte & 0x80 == 0 { break }
        }
        guard buffer.readableBytes >= index + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: index)
        let body = buffer.readSlice(length: length)!
        context.fireChannelRead(wrapInboundOut(MQTTFrame(type: type, body: body)))
        return .continue
    }
}

/// Encodes requests, matches acknowledgements to them (each bounded by 5 s) and keeps the connection alive.
/// Lives on the channel's event loop.
final class MQTTSessionHandler: ChannelDuplexHandler {
    typealias InboundIn = MQTTFrame
    typealias OutboundIn = MQTTRequest
    typealias OutboundOut = ByteBuffer

    private let pingTimeout: TimeAmount
    private var connack: (promise: EventLoopPromise<UInt8>, timer: Scheduled<Void>)?
    private var pubacks: [UInt16: (promise: EventLoopPromise<Void>, timer: Scheduled<Void>)] = [:]
    private var pingDeadline: Scheduled<Void>?
    private var nextPacketID: UInt16 = 1

    init(pingTimeout: TimeAmount) { self.pingTimeout = pingTimeout }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .connect(let bytes, let acked):
            let timer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(5)) { [weak self] in
                self?.connack = nil
                acked.fail(MQTTClient.Failure.timeout("CONNECT"))
            }
            connack = (acked, timer)
            context.write(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: promise)
        case .publish(let topic, let payload, let qos, let retain, let acked):
            var header: UInt8 = 0x30 | (retain ? 0x01 : 0)
            var body = MQTTPacket.string(topic)
            if qos >= 1 {
                header |= 0x02
                let id = nextPacketID
                nextPacketID = nextPacketID == UInt16.max ? 1 : nextPacketID + 1
                body += [UInt8(id >> 8), UInt8(id & 0xFF)]
                let timer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(5)) { [weak self] in
                    self?.pubacks[id] = nil
                    acked.fail(MQTTClient.Failure.timeout("PUBLISH"))
                }
                pubacks[id] = (acked, timer)
                context.write(wrapOutboundOut(ByteBuffer(bytes: MQTTPacket.frame(type: header, body: body + payload))), promise: promise)
            } else {
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.cascade(to: acked)
                written.futureResult.cascade(to: promise)
                context.write(wrapOutboundOut(ByteBuffer(bytes: MQTTPacket.frame(type: header, body: body + payload))), promise: written)
            }
        case .disconnect:
            context.write(wrapOutboundOut(ByteBuffer(bytes: [0xE0, 0x00])), promise: promise)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        switch frame.type >> 4 {
        case 2:  // CONNACK: flags, code
            guard let pending = connack, let bytes = frame.body.readBytes(length: 2) else { return }
            connack = nil
            pending.timer.cancel()
            pending.promise.succeed(bytes[1])
        case 4:  // PUBACK: packet id
            guard let id = frame.body.readInteger(as: UInt16.self), let pending = pubacks.removeValue(forKey: id) else { return }
            pending.timer.cancel()
            pending.promise.succeed(())
        case 13:  // PINGRESP
            pingDeadline?.cancel()
            pingDeadline = nil
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .write else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [0xC0, 0x00])), promise: nil)
        if pingDeadline == nil {
            pingDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: pingTimeout) { [weak self] in
                self?.pingDeadline = nil
                context.close(promise: nil)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let closed = MQTTClient.Failure.io("the broker closed the connection")
        connack?.timer.cancel()
        connack?.promise.fail(closed)
        connack = nil
        for (_, pending) in pubacks {
            pending.timer.cancel()
            pending.promise.fail(closed)
        }
        pubacks = [:]
        pingDeadline?.cancel()
        pingDeadline = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
