/// JSON read with the line each value starts on, for `XPTransfer`'s MEE6 import: JSONDecoder
/// does not say where a value was, and a refused file must name its line.

/// A JSON value and the line it starts on.
struct JSONNode {
    indirect enum Value {
        case object([(key: String, value: JSONNode)])
        case array([JSONNode])
        case string(String)
        case number(String)
        case bool(Bool)
        case null
    }

    var value: Value
    var line: Int

    var isNull: Bool {
        if case .null = value { return true }
        return false
    }

    /// A string or number's text (MEE6 sends ids as strings, counts as numbers; either is taken);
    /// anything else as JSON would show it, to be refused.
    var scalar: String {
        switch value {
        case .string(let text), .number(let text): text
        case .bool(let flag): "\(flag)"
        case .null: "null"
        case .object: "{…}"
        case .array: "[…]"
        }
    }
}

/// A small JSON reader that knows which line each value is on (JSONDecoder does not), so that a
/// refusal names the line. Numbers are kept as their text.
struct JSONScanner {
    let bytes: [UInt8]
    var index = 0
    var line = 1
    static let maximumDepth = 64

    init(bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte order mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
    }

    mutating func document() throws(Malformed) -> JSONNode {
        let root = try value(depth: 0)
        skipSpace()
        guard index == bytes.count else { throw error("unexpected text after the end of the JSON document") }
        return root
    }

    typealias Malformed = XPTransfer.Malformed

    private func error(_ reason: String) -> Malformed {
        Malformed(line: line, reason: "not valid JSON: \(reason)")
    }

    private mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) {
            if bytes[index] == 0x0A { line += 1 }
            index += 1
        }
    }

    private mutating func value(depth: Int) throws(Malformed) -> JSONNode {
        guard depth < Self.maximumDepth else { throw error("nested more than \(Self.maximumDepth) deep") }
        skipSpace()
        guard index < bytes.count else { throw error("the file ends in the middle of the document") }
        let start = line
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var members: [(key: String, value: JSONNode)] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return JSONNode(value: .object([]), line: start)
            }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a key in double quotes") }
                let key = try string()
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after the key \"\(key)\"") }
                index += 1
                members.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard index < bytes.count else { throw error("the file ends inside an object") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                guard bytes[index] == UInt8(ascii: "}") else { throw error("expected ',' or '}' after a value in an object") }
                index += 1
                return JSONNode(value: .object(members), line: start)
            }
        case UInt8(ascii: "["):
            index += 1
            var elements: [JSONNode] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return JSONNode(value: .array([]), line: start)
            }
            while true {
                elements.append(try value(depth: depth + 1))
                skipSpace()
                guard index < bytes.count else { throw error("the file ends inside a list") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                guard bytes[index] == UInt8(ascii: "]") else { throw error("expected ',' or ']' after a value in a list") }
                index += 1
                return JSONNode(value: .array(elements), line: start)
            }
        case UInt8(ascii: "\""):
            return JSONNode(value: .string(try string()), line: start)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let begin = index
            while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
            return JSONNode(value: .number(String(decoding: bytes[begin..<index], as: UTF8.self)), line: start)
        default:
            for (word, value) in [("true", JSONNode.Value.bool(true)), ("false", .bool(false)), ("null", .null)] where bytes[index...].starts(with: word.utf8) {
                index += word.utf8.count
                return JSONNode(value: value, line: start)
            }
            throw error("unexpected character '\(String(decoding: [bytes[index]], as: UTF8.self))'")
        }
    }

    /// A string from its opening quote; escapes decoded (\u as UTF-16, pairs joined).
    private mutating func string() throws(Malformed) -> String {
        index += 1
        var units: [UInt16] = []
        var pending: [UInt8] = []
        func flush() {
            units += String(decoding: pending, as: UTF8.self).utf16
            pending.removeAll()
        }
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                flush()
                return String(decoding: units, as: UTF16.self)
            case 0x0A:
                throw error("a line break inside a string (is a closing quote missing?)")
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { break }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "u"):
                    guard index + 4 <= bytes.count, let unit = UInt16(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else {
                        throw error("\\u must be followed by four hex digits")
                    }
                    index += 4
                    flush()
                    units.append(unit)
                case UInt8(ascii: "n"): pending.append(0x0A)
                case UInt8(ascii: "t"): pending.append(0x09)
                case UInt8(ascii: "r"): pending.append(0x0D)
                case UInt8(ascii: "b"): pending.append(0x08)
                case UInt8(ascii: "f"): pending.append(0x0C)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): pending.append(escaped)
                default: throw error("unknown escape \\\(String(decoding: [escaped], as: UTF8.self)) in a string")
                }
            default:
                pending.append(byte)
            }
        }
        throw error("the file ends inside a string")
    }
}
