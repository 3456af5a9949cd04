import FoundationEssentials

/// A Discord id: a 64-bit number sent as a string. The tag says what it names, so that a user id
/// cannot be passed where a role id is meant.
///
/// The top 42 bits are milliseconds since the Discord epoch (2015-01-01): a user id says when the
/// account was made.
struct Snowflake<Tag>: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    let rawValue: UInt64

    init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    init?(_ text: String) {
        guard let value = UInt64(text) else { return nil }
        rawValue = value
    }

    /// Milliseconds of 2015-01-01T00:00:00Z since 1970.
    static var discordEpochMs: UInt64 { 1_420_070_400_000 }

    var createdAt: Date {
        Date(timeIntervalSince1970: Double((rawValue >> 22) + Self.discordEpochMs) / 1000)
    }

    var description: String { String(rawValue) }

    static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self), let value = UInt64(text) {
            rawValue = value
        } else if let value = try? container.decode(UInt64.self) {
            rawValue = value
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "a snowflake is a decimal string")
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(rawValue))
    }
}

enum UserTag {}
enum GuildTag {}
enum RoleTag {}
enum ChannelTag {}
enum MessageTag {}
enum ApplicationTag {}
enum InteractionTag {}

typealias UserID = Snowflake<UserTag>
typealias GuildID = Snowflake<GuildTag>
typealias RoleID = Snowflake<RoleTag>
typealias ChannelID = Snowflake<ChannelTag>
typealias MessageID = Snowflake<MessageTag>
typealias ApplicationID = Snowflake<ApplicationTag>
typealias InteractionID = Snowflake<InteractionTag>
