import Foundation
import StreamPulseCore

/// What the host learns about a plugin file by reading it, before any of its code can run.
public struct PluginFileFacts: Sendable, Equatable {
    /// Protocol major version from the `.streampulse_abi` marker; nil when the file has no marker.
    public var abiVersion: UInt32?
    /// The file exports the version-1 entry point.
    public var hasEntryPointV1: Bool
}

/// Why a file in the plugins folder was not loaded.
public enum PluginRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadable(String)
    case notELF
    case notSharedObject
    case wrongArchitecture(UInt16)
    case malformedELF(String)
    case notAPlugin
    case protocolVersion(found: UInt32, supported: [UInt32])
    case missingEntryPoint(String)
    case loadFailed(String)
    case badDescriptor(String)
    case duplicateScheme(scheme: String, ownedBy: String)
    case duplicateName(String)
    case replacedWhileLoaded

    public var description: String {
        switch self {
        case .unreadable(let why): "cannot be read: \(why)"
        case .notELF: "is not a shared library (no ELF header); only .so files built with the StreamPulse SDK are plugins"
        case .notSharedObject: "is an ELF file but not a shared library"
        case .wrongArchitecture(let machine): "is built for another CPU architecture (ELF machine \(machine))"
        case .malformedELF(let why): "is a damaged ELF file: \(why)"
        case .notAPlugin: "is a shared library but not a StreamPulse plugin (no \(PluginProtocol.markerSection) marker)"
        case .protocolVersion(let found, let supported):
            "speaks plugin protocol version \(found); this host supports version \(supported.map(String.init).joined(separator: ", ")). Rebuild the plugin against a matching StreamPulse SDK"
        case .missingEntryPoint(let name): "has the StreamPulse marker but does not export \(name)"
        case .loadFailed(let why): "could not be loaded: \(why)"
        case .badDescriptor(let why): "returned an unreadable descriptor: \(why)"
        case .duplicateScheme(let scheme, let owner): "claims scheme '\(scheme)', which plugin '\(owner)' already handles"
        case .duplicateName(let name): "is named '\(name)' like a plugin already loaded"
        case .replacedWhileLoaded: "was replaced on disk while loaded; restart the host to upgrade it (plugin code is never unloaded)"
        }
    }
}

/// Reads just enough of an ELF file to decide whether it may be dlopen'd.
///
/// Plain file reading, no dlopen: a foreign or incompatible file is refused without running its code.
public enum ELFInspector {
    /// Largest plugin file read; anything bigger is not a plugin we built.
    static let maxFileSize = 512 * 1024 * 1024

    public static func inspect(path: String) throws(PluginRefusal) -> PluginFileFacts {
        let data: Data
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            if let size = attributes[.size] as? Int, size > maxFileSize { throw PluginRefusal.malformedELF("larger than \(maxFileSize) bytes") }
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch let refusal as PluginRefusal {
            throw refusal
        } catch {
            throw .unreadable(error.localizedDescription)
        }
        return try inspect(data)
    }

    public static func inspect(_ data: Data) throws(PluginRefusal) -> PluginFileFacts {
        let bytes = [UInt8](data.prefix(64))
        guard bytes.count >= 16, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else { throw .notELF }
        guard bytes[4] == 2, bytes[5] == 1, bytes.count >= 64 else { throw .malformedELF("only 64-bit little-endian ELF is supported") }
        let reader = Reader(data: data)
        guard let type = reader.u16(16), let machine = reader.u16(18) else { throw .malformedELF("truncated header") }
        guard type == 3 else { throw .notSharedObject }  // ET_DYN
        guard machine == hostMachine else { throw .wrongArchitecture(machine) }
        guard let shoff = reader.u64(0x28), let shentsize = reader.u16(0x3A), let shnum = reader.u16(0x3C),
              let shstrndx = reader.u16(0x3E), shentsize >= 64
        else { throw .malformedELF("truncated header") }
        // Every offset comes from the file: keep it inside the file before any arithmetic.
        func offset(_ value: UInt64) -> Int? { value < UInt64(data.count) ? Int(value) : nil }
        guard let sectionTable = offset(shoff), sectionTable + Int(shnum) * Int(shentsize) <= data.count
        else { throw .malformedELF("the section table lies outside the file") }

        struct Section { var name: UInt32; var type: UInt32; var offset: UInt64; var size: UInt64; var link: UInt32; var entsize: UInt64 }
        var sections: [Section] = []
        for index in 0..<Int(shnum) {
            let base = sectionTable + index * Int(shentsize)
            guard let name = reader.u32(base), let type = reader.u32(base + 4), let offset = reader.u64(base + 0x18),
                  let size = reader.u64(base + 0x20), let link = reader.u32(base + 0x28), let entsize = reader.u64(base + 0x38)
            else { throw .malformedELF("section header \(index) is outside the file") }
            sections.append(Section(name: name, type: type, offset: offset, size: size, link: link, entsize: entsize))
        }
        guard Int(shstrndx) < sections.count else { throw .malformedELF("no section name table") }
        let names = sections[Int(shstrndx)]
        func sectionName(_ section: Section) -> String? {
            offset(names.offset).flatMap { reader.cString($0 + Int(section.name)) }
        }

        var facts = PluginFileFacts(abiVersion: nil, hasEntryPointV1: false)
        if let marker = sections.first(where: { sectionName($0) == PluginProtocol.markerSection }) {
            guard let start = offset(marker.offset), marker.size >= 16, reader.bytes(start, 8) == PluginProtocol.markerMagic, let version = reader.u32(start + 8)
            else { throw .malformedELF("the \(PluginProtocol.markerSection) marker is damaged") }
            facts.abiVersion = version
        }
        // The dynamic symbol table: SHT_DYNSYM (11), its strings in the section named by `link`.
        if let dynsym = sections.first(where: { $0.type == 11 }), Int(dynsym.link) < sections.count, dynsym.entsize >= 24,
           dynsym.entsize < 4096, let table = offset(dynsym.offset), let stringsStart = offset(sections[Int(dynsym.link)].offset) {
            let count = Int(min(dynsym.size, UInt64(data.count)) / dynsym.entsize)
            for index in 0..<count {
                let entry = table + index * Int(dynsym.entsize)
                guard let nameOffset = reader.u32(entry), let shndx = reader.u16(entry + 6) else { break }
                // Defined (section index not SHN_UNDEF) and named like the entry point.
                if shndx != 0, reader.cString(stringsStart + Int(nameOffset)) == PluginProtocol.entryPointV1 {
                    facts.hasEntryPointV1 = true
                    break
                }
            }
        }
        return facts
    }

    #if arch(x86_64)
    static let hostMachine: UInt16 = 62
    #elseif arch(arm64)
    static let hostMachine: UInt16 = 183
    #else
    static let hostMachine: UInt16 = 0
    #endif

    /// Bounds-checked little-endian reads.
    struct Reader {
        let data: Data
        func bytes(_ offset: Int, _ count: Int) -> [UInt8]? {
            guard offset >= 0, count >= 0, offset + count <= data.count else { return nil }
            let start = data.startIndex + offset
            return [UInt8](data[start..<start + count])
        }
        func u16(_ offset: Int) -> UInt16? { bytes(offset, 2).map { UInt16($0[0]) | UInt16($0[1]) << 8 } }
        func u32(_ offset: Int) -> UInt32? { bytes(offset, 4).map { $0.reversed().reduce(0) { $0 << 8 | UInt32($1) } } }
        func u64(_ offset: Int) -> UInt64? { bytes(offset, 8).map { $0.reversed().reduce(0) { $0 << 8 | UInt64($1) } } }
        func cString(_ offset: Int) -> String? {
            guard offset >= 0, offset < data.count else { return nil }
            let start = data.startIndex + offset
            let end = data[start...].prefix(4096).firstIndex(of: 0) ?? data.endIndex
            return String(decoding: data[start..<end], as: UTF8.self)
        }
    }
}
