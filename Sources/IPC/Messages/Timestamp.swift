import FoundationEssentials

/// ISO 8601 UTC with milliseconds, the one time format of logs, status and messages.
public enum Timestamp {
    public static func string(_ date: Date = Date()) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func date(_ string: String) -> Date? {
        try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(string)
    }

    /// ISO 8601 with or without fractional seconds, in UTC or with an offset (what an operator
    /// types, or Discord sends).
    public static func parse(_ string: String) -> Date? {
        date(string) ?? (try? Date.ISO8601FormatStyle().parse(string))
    }

    /// 2026-11-26T15:49:00.123Z as 20261126T154900123Z: sorts by time, safe in a file name.
    public static func compact(_ date: Date) -> String {
        string(date).filter { $0 != "-" && $0 != ":" && $0 != "." }
    }

    /// Milliseconds since 1970.
    public static func milliseconds(_ date: Date = Date()) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
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
