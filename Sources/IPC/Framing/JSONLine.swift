import FoundationEssentials

/// Encodes values as one compact JSON object per line and decodes lines back.
public enum JSONLine {
    public static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        // JSONEncoder never emits a raw newline: strings escape it as \n.
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    public static func decode<T: Decodable>(_ type: T.Type, from line: String) throws -> T {
        try decode(type, from: Data(line.utf8))
    }

    /// `JSONDecoder().decode`, for every JSON the project reads from outside (sockets, files on
    /// disk, Discord): with a newline after the input, which JSON allows. swift-foundation's
    /// decoder traps, instead of throwing, on a 513th nested `[` that is the input's last byte (it
    /// reports the error at an index past the end). Found by DecoderFuzzTests.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        var data = data
        data.append(UInt8(ascii: "\n"))
        return try JSONDecoder().decode(type, from: data)
    }

    /// A readable one-line explanation of a decoding failure, naming the field where possible.
    public static func explain(_ error: any Error) -> String {
        oneLine(describe(error))
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context):
            if context.codingPath.isEmpty { return "not valid JSON" }
            return "\(path(context.codingPath)): \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, let context):
            return "missing field \"\(path(context.codingPath + [key]))\""
        case DecodingError.typeMismatch(let type, let context):
            return "field \"\(path(context.codingPath))\" is not of type \(type)"
        case DecodingError.valueNotFound(let type, let context):
            return "field \"\(path(context.codingPath))\" is null, expected \(type)"
        case let error as MessageDecodingError:
            return error.description
        default:
            return String(describing: error)
        }
    }

    /// A description can quote what the peer sent (an unknown command or message type, a bad
    /// enum value), which may be a megabyte of newlines: control characters are escaped and the
    /// text is cut short. Found by DecoderFuzzTests.
    private static func oneLine(_ text: String, limit: Int = 300) -> String {
        var result = ""
        var length = 0
        for scalar in text.unicodeScalars {
            guard length < limit else { return result + "…" }
            if scalar.value < 0x20 || (0x7F..<0xA0).contains(scalar.value) || scalar == "\u{2028}" || scalar == "\u{2029}" {
                let escaped = scalar.escaped(asASCII: true)
                result += escaped
                length += escaped.unicodeScalars.count
            } else {
                result.unicodeScalars.append(scalar)
                length += 1
            }
        }
        return result
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// A line that is JSON but not a message this version understands.
public struct MessageDecodingError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The `{"code":…,"message":…}` object of an error reply, on both sockets.
public struct ErrorBody: Codable, Sendable, Equatable, Error, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) [\(code)]" }

    public static func badRequest(_ message: String) -> ErrorBody { .init(code: "bad-request", message: message) }
    public static func frame(_ error: FrameError) -> ErrorBody { .init(code: error.code, message: error.description) }
}
