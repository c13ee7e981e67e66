// The bundled probers' shared code: what needs FFmpeg lives here, the pure parsers in the public prober
// kit (Sources/Core/ProberKit), re-exported so a bundled plugin imports one module.
@_exported import StreamPulseProberKit
