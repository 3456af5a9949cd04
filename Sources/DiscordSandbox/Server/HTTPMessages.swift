import IPC
import NIOCore
import NIOHTTP1

/// One HTTP request with its whole body, as the routers see it.
struct HTTPRequest: Sendable {
    var method: HTTPMethod
    /// The path without the query, percent-decoded per segment by the router.
    var path: String
    var query: [String: String]
    var headers: HTTPHeaders
    var body: ByteBuffer

    init(head: HTTPRequestHead, body: ByteBuffer) {
        method = head.method
        headers = head.headers
        self.body = body
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(parts.first ?? "/")
        query = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = Self.percentDecoded(String(keyValue[0]))
                query[key] = keyValue.count > 1 ? Self.percentDecoded(String(keyValue[1])) : ""
            }
        }
    }

    /// The body as JSON: nil when empty; `DiscordError.invalidJSON` when it does not parse.
    func json() throws(DiscordError) -> JSONValue? {
        guard body.readableBytes > 0 else { return nil }
        guard let value = JSONValue.parse(body) else { throw .invalidJSON }
        return value
    }

    /// `%XX` escapes (and `+` in queries) decoded; invalid escapes left as they are.
    static func percentDecoded(_ text: String) -> String {
        guard text.contains("%") || text.contains("+") else { return text }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
               let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One HTTP answer.
struct HTTPReply: Sendable {
    var status: HTTPResponseStatus
    var headers: [(String, String)] = []
    var body: ByteBuffer?

    static func json(_ status: HTTPResponseStatus, _ value: JSONValue, headers: [(String, String)] = []) -> HTTPReply {
        var body = ByteBuffer()
        body.writeJSON(value)
        return HTTPReply(status: status, headers: [("Content-Type", "application/json")] + headers, body: body)
    }

    static func error(_ error: DiscordError, headers: [(String, String)] = []) -> HTTPReply {
        json(HTTPResponseStatus(statusCode: error.status), error.json, headers: headers)
    }

    static let noContent = HTTPReply(status: .noContent)
}

/// What a router gives back: an answer now, or work to await (the flood).
enum HTTPOutcome: Sendable {
    case now(HTTPReply)
    case later(@Sendable () async -> HTTPReply)
}

/// Splits a path into segments and matches it against templates such as `/guilds/{guild}/roles`.
enum PathMatcher {
    static func match(_ segments: [String], _ template: String) -> [String: String]? {
        let parts = template.split(separator: "/").map(String.init)
        guard parts.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (part, segment) in zip(parts, segments) {
            if part.hasPrefix("{") {
                parameters[String(part.dropFirst().dropLast())] = segment
            } else if part != segment {
                return nil
            }
        }
        return parameters
    }
}
