import StreamPulseCore

/// The result for a TCP connection that could not be made, shared by the bundled probers.
public func connectFailure(_ error: TCPConnection.Failure, host: String, port: Int) -> ProbeResult {
    let place = "\(host):\(port)"
    switch error {
    case .refused: return .failure(.connectionRefused, phase: .connect, "Connection refused by \(place) (nothing listens on that port).")
    case .timedOut: return .failure(.timeout, phase: .connect, "No TCP connection to \(place) within the deadline.")
    case .cancelled: return .failure(.cancelled, phase: .connect, "The probe was cancelled.")
    case .resolve(let why): return .failure(.dnsFailure, phase: .connect, "Cannot resolve \(host): \(why).")
    case .unreachable(let why): return .failure(.timeout, phase: .connect, "\(place) is unreachable: \(why).")
    case .closed, .io: return .failure(.connectionRefused, phase: .connect, "Cannot connect to \(place): \(error).")
    case .exhausted(let why):
        return .failure(.monitorOverloaded, phase: .connect, "The monitor could not open a connection to \(place) (\(why)); this says nothing about the camera.")
    }
}
