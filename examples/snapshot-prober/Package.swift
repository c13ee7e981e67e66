// swift-tools-version:6.0
// A third-party StreamPulse plugin, built on its own: it depends on StreamPulse only through the SDK.
import PackageDescription

let package = Package(
    name: "snapshot-prober",
    products: [
        // The plugin: a dynamic library dropped into StreamPulse's plugins.d/.
        .library(name: "SnapshotProber", type: .dynamic, targets: ["SnapshotProber"]),
    ],
    dependencies: [
        // In your own package: .package(url: "https://github.com/<you>/streampulse", from: "1.0.0")
        .package(name: "StreamPulse", path: "../.."),
    ],
    targets: [
        .target(
            name: "SnapshotProber",
            dependencies: [
                .product(name: "StreamPulseCore", package: "StreamPulse"),
                // The parsers the bundled probers use: response heads, connect-failure classes, JPEG checks.
                .product(name: "StreamPulseProberKit", package: "StreamPulse"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)],
            // Bind the plugin's own copy of the SDK first (see docs/plugin-protocol.md, "Linking").
            linkerSettings: [.unsafeFlags(["-Xlinker", "-Bsymbolic"])]
        ),
        // Runs the prober in process through its C table against tiny loopback servers: `swift test`.
        .testTarget(
            name: "SnapshotProberTests",
            dependencies: ["SnapshotProber", .product(name: "StreamPulseProberTesting", package: "StreamPulse")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
