import StreamPulseCore

extension ProbeResult {
    /// The result as a prober hands it back: stamped with the `mode` used and the total time on `clock`,
    /// its message scrubbed of the password in `credentials` (a camera may echo it in an error) and of any
    /// `user:pass@` in URLs. The bundled probers finish every probe with it.
    public func finished(mode: ProbeMode?, clock: ProbeClock, credentials: Credentials?) -> ProbeResult {
        var result = self
        if let mode { result.mode = mode }
        result.timings.totalMs = clock.elapsedMs
        result.message = URLRedaction.scrub(message, secrets: [credentials?.password ?? ""])
        return result
    }
}
