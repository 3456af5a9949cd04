import IPC
import NIOHTTP1

/// Discord's REST API v10 under `/api/v10`, for the routes the bot uses: each answer carries
/// Discord's rate-limit headers, and the errors are Discord's (statuses and JSON codes).
///
/// Order of checks, as Discord's: the route must exist (404), the rate limit must allow it (429,
/// per bucket and major parameter, then global), the token must be right (401), then the route's
/// own checks. 401, 403 and 429 answers are counted as invalid requests. Every exchange is kept
/// in `exchanges` (tokens redacted), for the tests that check it against Discord's description.
struct RESTRouter: Sendable {
    struct Route: Sendable {
        var method: HTTPMethod
        var template: String
        /// The parameter the rate limit is per (guild, channel, webhook, interaction).
        var major: String?
        var authenticated = true
        var exemptFromGlobal = false

        var key: String { "\(method.rawValue) \(template)" }
    }

    static let routes: [Route] = [
        Route(method: .GET, template: "/gateway/bot"),
        Route(method: .GET, template: "/gateway", authenticated: false),
        Route(method: .GET, template: "/users/@me"),
        Route(method: .GET, template: "/guilds/{guild}", major: "guild"),
        Route(method: .GET, template: "/guilds/{guild}/roles", major: "guild"),
        Route(method: .GET, template: "/guilds/{guild}/channels", major: "guild"),
        Route(method: .GET, template: "/guilds/{guild}/members", major: "guild"),
        Route(method: .GET, template: "/guilds/{guild}/members/{user}", major: "guild"),
        Route(method: .PATCH, template: "/guilds/{guild}/members/{user}", major: "guild"),
        Route(method: .PUT, template: "/guilds/{guild}/members/{user}/roles/{role}", major: "guild"),
        Route(method: .DELETE, template: "/guilds/{guild}/members/{user}/roles/{role}", major: "guild"),
        Route(method: .POST, template: "/channels/{channel}/messages", major: "channel"),
        Route(method: .GET, template: "/channels/{channel}/messages/{message}", major: "channel"),
        Route(method: .POST, template: "/interactions/{interaction}/{token}/callback", major: "interaction", authenticated: false, exemptFromGlobal: true),
        Route(method: .POST, template: "/webhooks/{webhook}/{token}", major: "webhook", authenticated: false),
        Route(method: .PATCH, template: "/webhooks/{webhook}/{token}/messages/@original", major: "webhook", authenticated: false),
        Route(method: .GET, template: "/applications/{application}/guilds/{guild}/commands", major: "guild"),
        Route(method: .PUT, template: "/applications/{application}/guilds/{guild}/commands", major: "guild"),
    ]

    let sandbox: Sandbox
    let exchanges: RESTExchangeLog

    /// `segments`: the path after `/api/v10`, split at `/`.
    func respond(to request: HTTPRequest, segments: [String]) -> HTTPReply {
        let matches = Self.routes.compactMap { route in PathMatcher.match(segments, route.template).map { (route, $0) } }
        let found = matches.first { $0.0.method == request.method }
        let route = found?.0 ?? Route(method: request.method, template: matches.first?.0.template ?? "/unknown")
        let parameters = found?.1 ?? matches.first?.1 ?? [:]
        let reply = answer(request, route: route, parameters: parameters, found: found != nil, routeExists: !matches.isEmpty)
        exchanges.record(
            method: request.method.rawValue, route: route.template, parameters: parameters, query: request.query,
            request: try? request.payload().json, status: Int(reply.status.code), response: reply.body.flatMap(JSONValue.parse)
        )
        return reply
    }

    private func answer(_ request: HTTPRequest, route: Route, parameters: [String: String], found: Bool, routeExists: Bool) -> HTTPReply {
        let authorization = request.headers.first(name: "Authorization")
        let reason = request.headers.first(name: "X-Audit-Log-Reason").map(HTTPRequest.percentDecoded)
        let expected = "Bot " + sandbox.configuration.token
        let now = DiscordTime.nowSeconds()

        return sandbox.withWorld { world in
            world.rest.requests += 1
            world.rest.byRoute[route.key, default: 0] += 1
            let bucket = RateLimits.bucketHash(route.key)
            let major = route.major.flatMap { parameters[$0] } ?? "-"
            let verdict = world.rateLimits.admit(bucket: bucket, major: major, exemptFromGlobal: route.exemptFromGlobal, at: now)
            let headers: [(String, String)]
            switch verdict {
            case .allowed(let limits):
                headers = Self.headers(limits)
            case .limited(let limits, let retryAfter, let global):
                world.rest.invalidRequests += 1
                let seconds = (retryAfter * 1000).rounded(.up) / 1000
                var extra = Self.headers(limits) + [("Retry-After", String(Int(seconds.rounded(.up)))), ("X-RateLimit-Scope", global ? "global" : "user")]
                if global { extra.append(("X-RateLimit-Global", "true")) }
                let body: JSONValue = .object([
                    "message": .string("You are being rate limited."), "retry_after": .number(seconds), "global": .bool(global),
                ])
                return HTTPReply.json(.tooManyRequests, body, headers: extra)
            }
            guard found else {
                return HTTPReply.error(routeExists ? .methodNotAllowed : .notFound, headers: headers)
            }
            if route.authenticated && authorization != expected {
                world.rest.invalidRequests += 1
                return HTTPReply.error(.unauthorized, headers: headers)
            }
            do throws(DiscordError) {
                let (json, files) = try request.payload()
                let body = files.isEmpty ? json : try world.attach(files, to: json)
                let gatewayURL = "ws://\(sandbox.configuration.host):\(world.port)/gateway"
                let reply = try world.handle(route, parameters, query: request.query, body: body, reason: reason, gatewayURL: gatewayURL)
                return reply.adding(headers)
            } catch {
                if error.status == 401 || error.status == 403 { world.rest.invalidRequests += 1 }
                return HTTPReply.error(error, headers: headers)
            }
        }
    }

    static func headers(_ limits: RateLimits.Headers) -> [(String, String)] {
        [
            ("X-RateLimit-Limit", String(limits.limit)),
            ("X-RateLimit-Remaining", String(max(0, limits.remaining))),
            ("X-RateLimit-Reset", decimal(limits.reset)),
            ("X-RateLimit-Reset-After", decimal(limits.resetAfter)),
            ("X-RateLimit-Bucket", limits.bucket),
        ]
    }

    /// Seconds with three decimals, as Discord writes them (`1470173023.123`).
    static func decimal(_ seconds: Double) -> String {
        let milliseconds = Int64((max(seconds, 0) * 1000).rounded(.up))
        let fraction = String(milliseconds % 1000)
        return "\(milliseconds / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}

extension HTTPReply {
    func adding(_ headers: [(String, String)]) -> HTTPReply {
        var reply = self
        reply.headers += headers
        return reply
    }
}
