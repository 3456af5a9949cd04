import FoundationEssentials

/// ISO 8601 UTC with milliseconds, the one time format of logs, status and messages.
public enum Timestamp {
    public static func string(_ date: Date = Date()) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func date(_ string: String) -> Date? {
        try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(string)
    }
}

extension Duration {
    /// Whole milliseconds (truncated), for status fields and logs.
    public var milliseconds: Int {
        Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }

    /// Milliseconds with their fraction, for latencies.
    public var fractionalMilliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}
