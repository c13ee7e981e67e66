// swift-tools-version:6.0
// StreamPulse: a self-hosted monitor that proves IP camera streams deliver pictures.
//
// Layout (data path readable from folder names):
//   Sources/Core        the plugin contract: C ABI header (PluginABI) + Swift SDK (StreamPulseCore)
//   Sources/Plugins/*   protocol probers, built as `.dynamic` products and dlopen'd from plugins.d/
//   Sources/Host        the `streampulse` executable and its library (config → scheduler → prober → status → sinks → web)
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6)
]

/// Plugins bind their own symbols first (`-Bsymbolic`): Core is compiled into the host *and* into
/// every plugin, and without this a plugin's calls into its copy of Core could be interposed by the
/// host's exported copy (see docs/plugin-protocol.md, "Linking").
let pluginLinkerSettings: [LinkerSetting] = [
    .unsafeFlags(["-Xlinker", "-Bsymbolic"])
]

let package = Package(
    name: "StreamPulse",
    products: [
        .executable(name: "streampulse", targets: ["streampulse"]),
        // The SDK plugin authors depend on (see examples/snapshot-prober).
        .library(name: "StreamPulseCore", targets: ["StreamPulseCore"]),
        // The parsers and classifiers the bundled probers use (response heads, Basic/Digest, connect
        // failures, multipart, JPEG markers), for third-party probers; pure Swift, no FFmpeg.
        .library(name: "StreamPulseProberKit", targets: ["StreamPulseProberKit"]),
        // Runs a Prober in process through its C table (a fake host) plus a loopback TCP server, for tests.
        .library(name: "StreamPulseProberTesting", targets: ["StreamPulseProberTesting"]),
        .library(name: "StreamPulseRTSP", type: .dynamic, targets: ["RTSPPlugin"]),
        .library(name: "StreamPulseMJPEG", type: .dynamic, targets: ["MJPEGPlugin"]),
        // Test-only plugins: an impostor claiming `rtsp`, and one that hangs/throws/answers garbage.
        .library(name: "StreamPulseTestImpostor", type: .dynamic, targets: ["TestImpostorPlugin"]),
        .library(name: "StreamPulseTestMisbehaving", type: .dynamic, targets: ["TestMisbehavingPlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
        // Every outgoing HTTP request (webhook sinks), with TLS.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        // Notification templates (the generic webhook's `template:`).
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
        // Deque: the engine's queue of deep probes waiting for a decode slot.
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        // PostgreSQL for fleets past one machine: the agents' stream leases (issue #17).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.21.0"),
    ],
    targets: [
        // MARK: Core — the contract with plugin authors
        .target(
            name: "PluginABI",
            path: "Sources/Core/PluginABI"
        ),
        .target(
            name: "StreamPulseCore",
            dependencies: [
                "PluginABI",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Core/SDK",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "StreamPulseProberKit",
            dependencies: ["StreamPulseCore", .product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/Core/ProberKit",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "StreamPulseProberTesting",
            dependencies: ["StreamPulseCore", "PluginABI"],
            path: "Sources/Core/ProberTesting",
            swiftSettings: swiftSettings
        ),

        // MARK: Plugins
        .systemLibrary(
            name: "CFFmpeg",
            path: "Sources/Plugins/RTSP/CFFmpeg",
            pkgConfig: "libavformat libavcodec libswscale libavutil",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"])]
        ),
        .target(
            name: "ProberSupport",
            dependencies: ["StreamPulseCore", "StreamPulseProberKit", "CFFmpeg"],
            path: "Sources/Plugins/Support",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "RTSPPlugin",
            dependencies: ["StreamPulseCore", "ProberSupport", "CFFmpeg"],
            path: "Sources/Plugins/RTSP",
            exclude: ["CFFmpeg"],
            swiftSettings: swiftSettings,
            linkerSettings: pluginLinkerSettings
        ),
        .target(
            name: "MJPEGPlugin",
            dependencies: ["StreamPulseCore", "ProberSupport", "CFFmpeg"],
            path: "Sources/Plugins/MJPEG",
            swiftSettings: swiftSettings,
            linkerSettings: pluginLinkerSettings
        ),

        // MARK: Host
        .target(
            name: "StreamPulseHost",
            dependencies: [
                "StreamPulseCore",
                "PluginABI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Sources/Host/StreamPulseHost",
            // The dashboard (plain HTML/CSS/JS written here) is compiled into the binary: nothing to install.
            resources: [
                .embedInCode("Web/Assets/index.html"),
                .embedInCode("Web/Assets/app.js"),
                .embedInCode("Web/Assets/app.css"),
                .embedInCode("Web/Assets/favicon.svg"),
                .embedInCode("Web/Assets/openapi.yaml"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "streampulse",
            dependencies: [
                "StreamPulseHost",
                "StreamPulseCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Host/streampulse",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .target(
            name: "TestImpostorPlugin",
            dependencies: ["StreamPulseCore"],
            path: "Tests/Fixtures/ImpostorPlugin",
            swiftSettings: swiftSettings,
            linkerSettings: pluginLinkerSettings
        ),
        .target(
            name: "TestMisbehavingPlugin",
            dependencies: ["StreamPulseCore"],
            path: "Tests/Fixtures/MisbehavingPlugin",
            swiftSettings: swiftSettings,
            linkerSettings: pluginLinkerSettings
        ),
        .testTarget(
            name: "StreamPulseTests",
            dependencies: [
                "StreamPulseHost", "StreamPulseCore", "ProberSupport", "StreamPulseProberKit", "StreamPulseProberTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/StreamPulseTests",
            swiftSettings: swiftSettings
        ),
    ]
)
