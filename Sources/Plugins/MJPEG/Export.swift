import StreamPulseCore

@_cdecl("streampulse_plugin_entry_v1")
public func streampulsePluginEntry() -> UnsafeRawPointer { PluginExport.entry(MJPEGProber.self) }
