import FoundationEssentials
import IPC

/// Reads a MESSAGE_CREATE frame without JSONDecoder: the one dispatch that comes by the
/// thousand a second, and a profile of the worker under a flood put the JSON decoder at a third
/// of its CPU. JSONDecoder builds a dictionary of every object's keys (the envelope, the message,
/// its author, its member) before the first field is read; this reader walks the bytes once,
/// keeps the fields `MessagePayload` has and steps over the rest.
///
/// It answers only what it is sure of. Anything else, a frame of another type, a field of an
/// unexpected type, a duplicate field, an escape it does not handle, malformed JSON, gets nil,
/// and the frame goes to JSONDecoder, which decodes it or explains what is wrong. So the result
/// is always the one JSONDecoder would give (GatewayFuzzTests compares the two on every frame
/// they make).
enum MessageFrameReader {
    /// The payload of `text` when it is a well-formed MESSAGE_CREATE dispatch; nil to decode it
    /// the general way.
    static func payload(_ text: String) -> GatewayPayload? {
        var text = text
        return text.withUTF8 { bytes in
            var reader = JSONBytes(bytes)
            return try? reader.envelope()
        }
    }
}

/// A cursor over the bytes of one JSON text. Every method either consumes a well-formed value
/// or throws `Unsure`, after which the cursor is not used again.
private struct JSONBytes {
    struct Unsure: Error {}

    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Deep enough for any message Discord sends; deeper goes to JSONDecoder (limit 512).
    static let maxDepth = 64

    // MARK: - The envelope and the message

    mutating func envelope() throws -> GatewayPayload {
        var op: Int?, sequence: Int??, type: String??, data: Int?, message: MessagePayload?
        try object { key, reader in
            switch key {
            case "op": try Self.once(&op, try reader.integer())
            case "s": try Self.once(&sequence, try reader.nullable { try $0.integer() })
            case "t": try Self.once(&type, try reader.nullable { try $0.string() })
            case "d":
                try Self.once(&data, reader.index)
                // Discord sends "t" and "op" first: the message is then read in the one pass.
                if op == 0, case .some(.some("MESSAGE_CREATE")) = type {
                    message = try reader.message()
                } else {
                    try reader.skipValue(depth: 1)
                }
            default: try reader.skipValue(depth: 1)
            }
        }
        skipWhitespace()
        guard index == bytes.count, op == 0, case .some(.some("MESSAGE_CREATE")) = type, let data else { throw Unsure() }
        if message == nil {
            index = data
            message = try self.message()
        }
        guard let message else { throw Unsure() }
        var payload = GatewayPayload(op: 0, s: sequence ?? nil, t: "MESSAGE_CREATE")
        payload.event = .messageCreate(message)
        return payload
    }

    private mutating func message() throws -> MessagePayload {
        var id: MessageID?, channel: ChannelID?, guild: GuildID??, author: UserPayload?, member: MemberPayload??, content: String??
        try object { key, reader in
            switch key {
            case "id": try Self.once(&id, try reader.snowflake())
            case "channel_id": try Self.once(&channel, try reader.snowflake())
            case "guild_id": try Self.once(&guild, try reader.nullable { try $0.snowflake() })
            case "author": try Self.once(&author, try reader.user())
            case "member": try Self.once(&member, try reader.nullable { try $0.member() })
            case "content": try Self.once(&content, try reader.nullable { try $0.string() })
            default: try reader.skipValue(depth: 2)
            }
        }
        guard let id, let channel, let author else { throw Unsure() }
        return MessagePayload(id: id, channel_id: channel, guild_id: guild ?? nil, author: author, member: member ?? nil, content: content ?? nil)
    }

    private mutating func user() throws -> UserPayload {
        var id: UserID?, username: String??, globalName: String??, bot: Bool??
        try object { key, reader in
            switch key {
            case "id": try Self.once(&id, try reader.snowflake())
            case "username": try Self.once(&username, try reader.nullable { try $0.string() })
            case "global_name": try Self.once(&globalName, try reader.nullable { try $0.string() })
            case "bot": try Self.once(&bot, try reader.nullable { try $0.bool() })
            default: try reader.skipValue(depth: 3)
            }
        }
        guard let id else { throw Unsure() }
        return UserPayload(id: id, username: username ?? nil, global_name: globalName ?? nil, bot: bot ?? nil)
    }

    private mutating func member() throws -> MemberPayload {
        var guild: GuildID??, user: UserPayload??, roles: [RoleID]?, joinedAt: String??, pending: Bool??, nick: String??
        try object { key, reader in
            switch key {
            case "guild_id": try Self.once(&guild, try reader.nullable { try $0.snowflake() })
            case "user": try Self.once(&user, try reader.nullable { try $0.user() })
            case "roles": try Self.once(&roles, try reader.snowflakes())
            case "joined_at": try Self.once(&joinedAt, try reader.nullable { try $0.string() })
            case "pending": try Self.once(&pending, try reader.nullable { try $0.bool() })
            case "nick": try Self.once(&nick, try reader.nullable { try $0.string() })
            default: try reader.skipValue(depth: 3)
            }
        }
        guard let roles else { throw Unsure() }
        return MemberPayload(guild_id: guild ?? nil, user: user ?? nil, roles: roles, joined_at: joinedAt ?? nil, pending: pending ?? nil, nick: nick ?? nil)
    }

    /// A field seen twice: which one JSONDecoder keeps is its business.
    private static func once<T>(_ slot: inout T?, _ value: @autoclosure () throws -> T) throws {
        guard slot == nil else { throw Unsure() }
        slot = try value()
    }

    // MARK: - Values

    /// A key of an object: its bytes between the quotes, matched against the names of the fields
    /// without making a String of it.
    struct Key {
        let bytes: UnsafeBufferPointer<UInt8>

        static func ~= (name: StaticString, key: Key) -> Bool {
            guard name.utf8CodeUnitCount == key.bytes.count else { return false }
            for offset in 0..<key.bytes.count where key.bytes[offset] != name.utf8Start[offset] { return false }
            return true
        }
    }

    /// A key with no escape; one with an escape is left to JSONDecoder (Discord sends none).
    private mutating func key() throws -> Key {
        try expect(UInt8(ascii: "\""))
        let start = index
        try skipPlainCharacters()
        guard peek() == UInt8(ascii: "\"") else { throw Unsure() }
        index += 1
        return Key(bytes: UnsafeBufferPointer(rebasing: bytes[start..<index - 1]))
    }

    /// Calls `field` for each key of an object; `field` consumes the value.
    private mutating func object(_ field: (Key, inout JSONBytes) throws -> Void) throws {
        try members { reader in
            let key = try reader.key()
            reader.skipWhitespace()
            try reader.expect(UInt8(ascii: ":"))
            reader.skipWhitespace()
            try field(key, &reader)
        }
    }

    /// Steps over an object, its keys checked but not read.
    private mutating func skipObject(depth: Int) throws {
        try members { reader in
            try reader.skipString()
            reader.skipWhitespace()
            try reader.expect(UInt8(ascii: ":"))
            try reader.skipValue(depth: depth + 1)
        }
    }

    /// Calls `member` for each member of an object; `member` consumes its key, colon and value.
    private mutating func members(_ member: (inout JSONBytes) throws -> Void) throws {
        skipWhitespace()
        try expect(UInt8(ascii: "{"))
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            try member(&self)
            skipWhitespace()
            guard let next = peek() else { throw Unsure() }
            index += 1
            if next == UInt8(ascii: "}") { return }
            guard next == UInt8(ascii: ",") else { throw Unsure() }
        }
    }

    private mutating func nullable<T>(_ value: (inout JSONBytes) throws -> T) throws -> T? {
        if peek() == UInt8(ascii: "n") {
            try literal("null")
            return nil
        }
        return try value(&self)
    }

    private mutating func snowflake<Tag>() throws -> Snowflake<Tag> {
        // A snowflake that is a number, not a string, JSONDecoder also takes; it is left to it.
        // The usual one, up to 19 digits between the quotes, is read in place; anything else
        // (a sign, an escape, more digits) as a String, by UInt64's rules, as JSONDecoder does.
        let start = index
        if peek() == UInt8(ascii: "\"") {
            index += 1
            var value: UInt64 = 0, digits = 0
            while let byte = peek(), isDigit(byte), digits < 19 {
                value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
                digits += 1
                index += 1
            }
            if digits > 0, peek() == UInt8(ascii: "\"") {
                index += 1
                return Snowflake(value)
            }
            index = start
        }
        guard let value = UInt64(try string()) else { throw Unsure() }
        return Snowflake(value)
    }

    private mutating func snowflakes<Tag>() throws -> [Snowflake<Tag>] {
        var values: [Snowflake<Tag>] = []
        try array { values.append(try $0.snowflake()) }
        return values
    }

    /// Calls `element` for each element of an array; `element` consumes it.
    private mutating func array(_ element: (inout JSONBytes) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            try element(&self)
            skipWhitespace()
            guard let next = peek() else { throw Unsure() }
            index += 1
            if next == UInt8(ascii: "]") { return }
            guard next == UInt8(ascii: ",") else { throw Unsure() }
        }
    }

    private mutating func bool() throws -> Bool {
        switch peek() {
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        default: throw Unsure()
        }
    }

    /// A plain non-negative integer (no sign, fraction or exponent: what JSONDecoder makes of
    /// those is left to it).
    private mutating func integer() throws -> Int {
        let digits = index
        while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
        let count = index - digits
        guard count > 0, count < 19, count == 1 || bytes[digits] != UInt8(ascii: "0") else { throw Unsure() }
        if let next = peek(), next == UInt8(ascii: ".") || next == UInt8(ascii: "e") || next == UInt8(ascii: "E") { throw Unsure() }
        var value = 0
        for position in digits..<index { value = value * 10 + Int(bytes[position] - UInt8(ascii: "0")) }
        return value
    }

    /// A string, with its escapes; a `\u` escape of a surrogate is left to JSONDecoder.
    private mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        let start = index
        // Most strings have no escape: one scan and one copy.
        try skipPlainCharacters()
        guard let stop = peek() else { throw Unsure() }
        if stop == UInt8(ascii: "\"") {
            index += 1
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index - 1]), as: UTF8.self)
        }
        var unescaped = Array(bytes[start..<index])
        while true {
            guard let byte = peek() else { throw Unsure() }
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: unescaped, as: UTF8.self)
            case UInt8(ascii: "\\"):
                unescaped.append(contentsOf: UTF8.encode(try escape())!)
            default:
                guard byte >= 0x20 else { throw Unsure() }
                unescaped.append(byte)
            }
        }
    }

    /// Steps over the characters of a string up to its closing quote or first escape; a control
    /// character, which JSON does not allow unescaped, is refused.
    private mutating func skipPlainCharacters() throws {
        while let byte = peek(), byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
            guard byte >= 0x20 else { throw Unsure() }
            index += 1
        }
    }

    /// Steps over a string, by the rules of `string()`, without making it.
    private mutating func skipString() throws {
        try expect(UInt8(ascii: "\""))
        while let byte = peek() {
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return
            case UInt8(ascii: "\\"):
                _ = try escape()
            default:
                guard byte >= 0x20 else { throw Unsure() }
            }
        }
        throw Unsure()
    }

    /// The character of an escape, its backslash read; a `\u` escape of a surrogate is left to
    /// JSONDecoder.
    private mutating func escape() throws -> Unicode.Scalar {
        guard let letter = peek() else { throw Unsure() }
        index += 1
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): return Unicode.Scalar(letter)
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            guard let scalar = Unicode.Scalar(try hex4()) else { throw Unsure() }
            return scalar
        default: throw Unsure()
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw Unsure() }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            index += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw Unsure()
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Steps over one value of any kind, checking that it is well-formed JSON.
    private mutating func skipValue(depth: Int) throws {
        guard depth <= Self.maxDepth else { throw Unsure() }
        skipWhitespace()
        switch peek() {
        case UInt8(ascii: "{"):
            try skipObject(depth: depth)
        case UInt8(ascii: "["):
            try array { try $0.skipValue(depth: depth + 1) }
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default:
            try number()
        }
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    private mutating func number() throws {
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), isDigit(first) else { throw Unsure() }
        index += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let digit = peek(), isDigit(digit) else { throw Unsure() }
            skipDigits()
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            index += 1
            if let sign = peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { index += 1 }
            guard let digit = peek(), isDigit(digit) else { throw Unsure() }
            skipDigits()
        }
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private mutating func skipDigits() {
        while let byte = peek(), isDigit(byte) { index += 1 }
    }

    private mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw Unsure() }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { throw Unsure() }
        index += count
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard peek() == byte else { throw Unsure() }
        index += 1
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
    }
}
