import Synchronization

/// The settings in force. A reload swaps in the whole new value at once (the config's builder → runtime
/// step), so a reader always sees one consistent set; readers ask at the moment of use and never cache.
public final class LiveSettings: Sendable {
    private let value: Mutex<Settings>

    public init(_ settings: Settings) { value = Mutex(settings) }

    /// The settings as of now.
    public var current: Settings { value.withLock { $0 } }

    /// Replaces the settings (ConfigService, after a reload was applied).
    public func replace(with settings: Settings) { value.withLock { $0 = settings } }
}
