import FoundationEssentials
import IPC
import NIOCore

/// JSON written straight into a `ByteBuffer`. Every reply and event goes through here rather than
/// `JSONEncoder`, so the flood can build a message in a couple of microseconds.
extension ByteBuffer {
    mutating func writeJSON(_ value: JSONValue) {
        switch value {
        case .null: writeStaticString("null")
        case .bool(let bool): writeStaticString(bool ? "true" : "false")
        case .integer(let integer): writeString(String(integer))
        case .number(let number): writeString(number.isFinite ? String(number) : "null")
        case .string(let string): writeJSONString(string)
        case .array(let array):
            writeInteger(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { writeInteger(UInt8(ascii: ",")) }
                writeJSON(element)
            }
            writeInteger(UInt8(ascii: "]"))
        case .object(let object):
            writeInteger(UInt8(ascii: "{"))
            var first = true
            for (key, element) in object {
                if !first { writeInteger(UInt8(ascii: ",")) }
                first = false
                writeJSONString(key)
                writeInteger(UInt8(ascii: ":"))
                writeJSON(element)
            }
            writeInteger(UInt8(ascii: "}"))
        }
    }

    /// A quoted JSON string: `"`, `\` and control characters escaped, the rest as UTF-8.
    mutating func writeJSONString(_ string: String) {
        writeInteger(UInt8(ascii: "\""))
        if !string.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            writeString(string)
        } else {
            let hex = Array("0123456789abcdef".utf8)
            for byte in string.utf8 {
                switch byte {
                case UInt8(ascii: "\""): writeStaticString("\\\"")
                case UInt8(ascii: "\\"): writeStaticString("\\\\")
                case UInt8(ascii: "\n"): writeStaticString("\\n")
                case UInt8(ascii: "\r"): writeStaticString("\\r")
                case UInt8(ascii: "\t"): writeStaticString("\\t")
                case 0..<0x20: writeBytes([UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xf)]])
                default: writeInteger(byte)
                }
            }
        }
        writeInteger(UInt8(ascii: "\""))
    }
}

extension JSONValue {
    /// Compact JSON text.
    var jsonText: String {
        var buffer = ByteBuffer()
        buffer.writeJSON(self)
        return String(buffer: buffer)
    }

    /// Parses a request body or Gateway payload.
    static func parse(_ buffer: ByteBuffer) -> JSONValue? {
        try? JSONLine.decode(JSONValue.self, from: Data(buffer.readableBytesView))
    }

    var int: Int? {
        switch self {
        case .integer(let value): value
        case .number(let value) where value == value.rounded(): Int(exactly: value)
        default: nil
        }
    }

    var double: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .number(let value): value
        default: nil
        }
    }

    var bool: Bool? {
        if case .bool(let value) = self { value } else { nil }
    }

    var array: [JSONValue]? {
        if case .array(let value) = self { value } else { nil }
    }

    /// A snowflake, given as a string (as Discord does) or a number.
    var snowflake: UInt64? {
        switch self {
        case .string(let value): UInt64(value)
        case .integer(let value) where value >= 0: UInt64(value)
        default: nil
        }
    }

    static func id(_ value: UInt64) -> JSONValue { .string(String(value)) }
}
