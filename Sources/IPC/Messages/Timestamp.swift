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
