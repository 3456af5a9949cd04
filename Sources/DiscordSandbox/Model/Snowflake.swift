import IPC

/// Discord ids: the milliseconds since Discord's epoch (2015-01-01T00:00:00Z) in the top 42 bits,
/// then worker, process and an increment in the low 22 bits. A user id therefore tells when the
/// account was made, which is what account-age rules read.
enum Snowflake {
    static let discordEpochMilliseconds: UInt64 = 1_420_070_400_000

    static func make(unixMilliseconds: UInt64, increment: UInt64) -> UInt64 {
        ((unixMilliseconds - discordEpochMilliseconds) << 22) | (increment & 0x3f_ffff)
    }

    static func unixMilliseconds(of id: UInt64) -> UInt64 {
        (id >> 22) + discordEpochMilliseconds
    }
}

/// Fresh, strictly increasing ids: one millisecond holds up to 4096 of them, after which the
/// generator borrows the next millisecond rather than repeat an id.
struct SnowflakeGenerator: Sendable {
    private var lastMilliseconds: UInt64 = 0
    private var increment: UInt64 = 0

    mutating func next(at unixMilliseconds: UInt64) -> UInt64 {
        if unixMilliseconds > lastMilliseconds {
            lastMilliseconds = unixMilliseconds
            increment = 0
        } else {
            increment += 1
            if increment >= 4096 {
                lastMilliseconds += 1
                increment = 0
            }
        }
        return Snowflake.make(unixMilliseconds: lastMilliseconds, increment: increment)
    }
}

/// SplitMix64 (IPC's), seeded, so that one `--seed` gives one guild.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    /// A random lowercase hex string, for session ids and interaction tokens.
    mutating func hex(_ count: Int) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: (0..<count).map { _ in digits[Int(next() & 0xf)] }, as: UTF8.self)
    }
}
