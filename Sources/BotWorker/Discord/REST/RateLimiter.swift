/// Discord's HTTP rate limits as a pure value (developers/topics/rate-limits), tested with an
/// injected clock; the REST client asks it before each request and tells it every response.
///
/// - Buckets come from `X-RateLimit-Bucket` and are keyed with the route's major parameter
///   (guild, channel, webhook): the same bucket hash is a separate limit per guild.
/// - `X-RateLimit-Remaining` 0 waits until `X-RateLimit-Reset-After`.
/// - A 429 waits `retry_after`; with `X-RateLimit-Global` every request waits.
/// - At most 50 requests per second in all (interaction callbacks are exempt).
/// - 401, 403 and 429 (except `shared` scope) are counted over 10 minutes: Cloudflare bans an IP
///   at 10,000; the client refuses to send past `invalidRequestBudget` so the bot never nears it.
struct RateLimiter: Sendable {
    struct Route: Hashable, Sendable, CustomStringConvertible {
        var method: String
        /// The path with its ids as placeholders, e.g. `/guilds/{guild}/members/{user}/roles/{role}`.
        var template: String
        /// The top-level id (guild, channel or webhook) the limit is per.
        var major: String?
        /// Interaction callbacks are not bound by the global limit.
        var exemptFromGlobal = false

        var description: String { "\(method) \(template)" }
        var routeKey: String { method + " " + template }
    }

    struct Bucket: Sendable, Equatable {
        var remaining: Int
        var resetAt: ContinuousClock.Instant
    }

    enum Decision: Sendable, Equatable {
        case go
        case wait(Duration)
        /// Too many invalid requests lately: sending more risks a Cloudflare ban.
        case refuse(String)
    }

    var globalPerSecond = 50
    var invalidRequestBudget = 5_000
    private(set) var bucketOfRoute: [String: String] = [:]
    private(set) var buckets: [String: Bucket] = [:]
    private var globalUntil: ContinuousClock.Instant?
    private var sentThisSecond: [ContinuousClock.Instant] = []
    private(set) var invalidRequests: [ContinuousClock.Instant] = []

    static let invalidWindow = Duration.seconds(600)

    /// Whether a request on `route` may go now.
    func decide(_ route: Route, at now: ContinuousClock.Instant) -> Decision {
        let recentInvalid = invalidRequests.filter { now - $0 < Self.invalidWindow }.count
        if recentInvalid >= invalidRequestBudget {
            return .refuse("\(recentInvalid) requests were refused by Discord (401/403/429) in 10 minutes; pausing requests to stay far from the 10,000 that get the server's IP banned")
        }
        var wait = Duration.zero
        if let globalUntil, globalUntil > now { wait = globalUntil - now }
        if !route.exemptFromGlobal {
            let window = sentThisSecond.filter { now - $0 < .seconds(1) }
            if window.count >= globalPerSecond, let oldest = window.min() {
                wait = max(wait, oldest + .seconds(1) - now)
            }
        }
        if let hash = bucketOfRoute[route.routeKey], let bucket = buckets[Self.key(hash, route.major)],
           bucket.remaining <= 0, bucket.resetAt > now {
            wait = max(wait, bucket.resetAt - now)
        }
        return wait > .zero ? .wait(wait) : .go
    }

    /// A request on `route` is about to be sent.
    mutating func willSend(_ route: Route, at now: ContinuousClock.Instant) {
        if !route.exemptFromGlobal {
            sentThisSecond.removeAll { now - $0 >= .seconds(1) }
            sentThisSecond.append(now)
        }
        if let hash = bucketOfRoute[route.routeKey] {
            let key = Self.key(hash, route.major)
            if var bucket = buckets[key], bucket.resetAt > now {
                bucket.remaining -= 1
                buckets[key] = bucket
            }
        }
    }

    /// The response to a request on `route`: its status, headers (names lowercased) and, for a
    /// 429, the body's `retry_after` seconds and `global` flag.
    mutating func didReceive(
        _ route: Route, status: Int, headers: [String: String], retryAfter: Double? = nil, global: Bool = false,
        at now: ContinuousClock.Instant
    ) {
        if let hash = headers["x-ratelimit-bucket"] {
            bucketOfRoute[route.routeKey] = hash
            if let remaining = headers["x-ratelimit-remaining"].flatMap(Int.init),
               let resetAfter = headers["x-ratelimit-reset-after"].flatMap(Double.init) {
                buckets[Self.key(hash, route.major)] = Bucket(remaining: remaining, resetAt: now + Self.seconds(resetAfter))
            }
        }
        if status == 401 || status == 403 || (status == 429 && headers["x-ratelimit-scope"] != "shared") {
            invalidRequests.removeAll { now - $0 >= Self.invalidWindow }
            invalidRequests.append(now)
        }
        guard status == 429 else { return }
        let wait = Self.seconds(retryAfter ?? headers["retry-after"].flatMap(Double.init) ?? 1)
        if global || headers["x-ratelimit-global"] == "true" {
            globalUntil = now + wait
        } else if let hash = bucketOfRoute[route.routeKey] {
            buckets[Self.key(hash, route.major)] = Bucket(remaining: 0, resetAt: now + wait)
        } else {
            // No bucket known yet: hold this route alone.
            bucketOfRoute[route.routeKey] = "route:" + route.routeKey
            buckets[Self.key("route:" + route.routeKey, route.major)] = Bucket(remaining: 0, resetAt: now + wait)
        }
    }

    /// 401/403/429 responses in the last 10 minutes.
    func invalidRequestCount(at now: ContinuousClock.Instant) -> Int {
        invalidRequests.filter { now - $0 < Self.invalidWindow }.count
    }

    /// Requests left in the current second of the global limit.
    func globalHeadroom(at now: ContinuousClock.Instant) -> Int {
        globalPerSecond - sentThisSecond.filter { now - $0 < .seconds(1) }.count
    }

    private static func key(_ hash: String, _ major: String?) -> String { hash + ":" + (major ?? "-") }

    static func seconds(_ value: Double) -> Duration { .milliseconds(Int64((value * 1000).rounded(.up))) }
}

/// The Gateway's send limit: at most 120 events per connection per 60 s, or Discord closes with
/// 4008. Heartbeats have a reserve so that they are never the ones held back.
struct GatewaySendLimiter: Sendable {
    var limit = 120
    var window = Duration.seconds(60)
    var heartbeatReserve = 3
    private(set) var sent: [ContinuousClock.Instant] = []

    func delay(isHeartbeat: Bool, at now: ContinuousClock.Instant) -> Duration {
        let recent = sent.filter { now - $0 < window }
        let allowed = isHeartbeat ? limit : limit - heartbeatReserve
        guard recent.count >= allowed, let oldest = recent.sorted().dropLast(allowed - 1).last else { return .zero }
        return oldest + window - now
    }

    mutating func record(at now: ContinuousClock.Instant) {
        sent.removeAll { now - $0 >= window }
        sent.append(now)
    }
}
