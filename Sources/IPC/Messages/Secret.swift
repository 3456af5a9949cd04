/// A value that must never reach a log, a status snapshot or an error message: a Discord token,
/// a webhook URL. Every textual form of it is redacted; only `reveal()` gives the value.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let value: String

    public init(_ value: String) {
        self.value = value
    }

    /// The value itself, for the one place that needs it (an HTTP header, a connect call).
    public func reveal() -> String { value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}
