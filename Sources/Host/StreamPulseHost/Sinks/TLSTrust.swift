import NIOSSL

/// Client TLS for every outgoing connection (webhook and MQTT sinks, notification channels, SMTP):
/// certificates verified against the system roots plus, when given, a private CA (`ca_file`, PEM).
enum TLSTrust {
    struct Unreadable: Error, CustomStringConvertible {
        var file: String
        var cause: any Error
        var description: String { "cannot read the CA file \(file): \(cause)" }
    }

    static func client(caFile: String?) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            do { tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))] } catch {
                throw Unreadable(file: caFile, cause: error)
            }
        }
        return tls
    }
}
