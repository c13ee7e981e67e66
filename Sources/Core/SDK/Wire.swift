import Foundation
import PluginABI

/// Facts about the plugin protocol compiled into this copy of the SDK.
public enum PluginProtocol {
    /// Major version of the plugin protocol (`SP_PLUGIN_ABI_VERSION` in streampulse_plugin.h).
    public static var version: UInt32 { sp_plugin_abi_version() }
    /// Name of the entry point a version-1 plugin exports.
    public static let entryPointV1 = "streampulse_plugin_entry_v1"
    /// ELF section holding the ABI marker.
    public static let markerSection = ".streampulse_abi"
    /// First bytes of the ABI marker.
    public static let markerMagic = Array("SPPLUGIN".utf8)
}

/// JSON as it crosses the plugin boundary: snake_case keys, ISO dates, base64 data.
public enum Wire {
    /// Encodes a message for the other side of the boundary.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    /// Decodes a message from the other side of the boundary; unknown keys are ignored.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(type, from: data)
    }
}
