import IPC
import Synchronization

/// The REST exchanges the sandbox served, oldest first, in a ring of the last `capacity`: what a
/// test checks against Discord's OpenAPI description (`GET /sandbox/rest/exchanges`), so that the
/// sandbox and the bot cannot agree with each other and both be wrong about Discord.
///
/// No secret is kept: never the Authorization header, and the interaction or webhook token of a
/// path is `{token}` in the recorded path and in any string of the bodies.
final class RESTExchangeLog: Sendable {
    /// One request and the answer it got.
    struct Exchange: Sendable {
        var method: String
        /// The path after `/api/v10`, its token (if any) replaced by `{token}`.
        var path: String
        var query: [String: String]
        /// The matched route template (`/guilds/{guild}/members/{user}`), `/unknown` when none.
        var route: String
        var request: JSONValue?
        var status: Int
        var response: JSONValue?

        var json: JSONValue {
            .object([
                "method": .string(method), "path": .string(path), "query": .object(query.mapValues(JSONValue.string)),
                "route": .string(route), "request": request ?? .null, "status": .integer(status), "response": response ?? .null,
            ])
        }
    }

    private struct Ring: Sendable {
        var exchanges: [Exchange] = []
        /// Where the next exchange goes once the ring is full.
        var next = 0
        var recorded = 0
    }

    static let capacity = 4000
    private let ring = Mutex(Ring())

    func record(_ exchange: Exchange) {
        ring.withLock { ring in
            ring.recorded += 1
            if ring.exchanges.count < Self.capacity {
                ring.exchanges.append(exchange)
            } else {
                ring.exchanges[ring.next] = exchange
                ring.next = (ring.next + 1) % Self.capacity
            }
        }
    }

    /// Records one exchange of `route` (the template the router matched, with its parameters).
    func record(
        method: String, route: String, parameters: [String: String], query: [String: String],
        request: JSONValue?, status: Int, response: JSONValue?
    ) {
        let secret = parameters["token"]
        let path = route.split(separator: "/").map { part in
            guard part.hasPrefix("{"), part != "{token}" else { return String(part) }
            return parameters[String(part.dropFirst().dropLast())] ?? String(part)
        }
        record(Exchange(
            method: method, path: "/" + path.joined(separator: "/"), query: query, route: route,
            request: request.map { Self.redacting(secret, in: $0) }, status: status,
            response: response.map { Self.redacting(secret, in: $0) }
        ))
    }

    /// `{"recorded": N, "exchanges": [...]}`, oldest first; `recorded` counts those the ring dropped.
    var json: JSONValue {
        ring.withLock { ring in
            let ordered = ring.exchanges[ring.next...] + ring.exchanges[..<ring.next]
            return .object(["recorded": .integer(ring.recorded), "exchanges": .array(ordered.map(\.json))])
        }
    }

    /// `value` with every occurrence of `secret` in its strings replaced by `{token}`.
    static func redacting(_ secret: String?, in value: JSONValue) -> JSONValue {
        guard let secret, !secret.isEmpty else { return value }
        switch value {
        case .string(let text) where text.contains(secret):
            return .string(text.replacing(secret, with: "{token}"))
        case .array(let values):
            return .array(values.map { redacting(secret, in: $0) })
        case .object(let object):
            return .object(object.mapValues { redacting(secret, in: $0) })
        default:
            return value
        }
    }
}
