/// Discord's HTTP rate limits as the server applies them, a pure value with the time passed in
/// (epoch seconds): per-bucket windows keyed by the bucket hash and the route's major parameter,
/// a global limit per second (interaction callbacks exempt), and a "storm" in which every request
/// is refused, for testing how clients back off.
struct RateLimits: Sendable {
    /// The `X-RateLimit-*` values of one answer.
    struct Headers: Sendable, Equatable {
        var limit: Int
        var remaining: Int
        /// Epoch seconds.
        var reset: Double
        var resetAfter: Double
        var bucket: String
    }

    enum Verdict: Sendable, Equatable {
        case allowed(Headers)
        case limited(Headers, retryAfter: Double, global: Bool)
    }

    private struct Window: Sendable {
        var count: Int
        var resetAt: Double
    }

    var bucketLimit = 50
    var bucketWindow = 1.0
    var globalLimit = 50
    static let stormRetryAfter = 0.2

    private var windows: [String: Window] = [:]
    private var global: Window?
    private(set) var stormUntil: Double?
    private var stormGlobal = false

    /// Every request is refused with 429 until `seconds` from now.
    mutating func startStorm(seconds: Double, global: Bool, at now: Double) {
        stormUntil = now + seconds
        stormGlobal = global
    }

    /// Decides one request and counts it if it is let through.
    mutating func admit(bucket: String, major: String, exemptFromGlobal: Bool, at now: Double) -> Verdict {
        if windows.count > 10_000 { windows = windows.filter { $0.value.resetAt > now } }
        let key = bucket + ":" + major
        var window = windows[key] ?? Window(count: 0, resetAt: now + bucketWindow)
        if window.resetAt <= now { window = Window(count: 0, resetAt: now + bucketWindow) }
        func headers(_ remaining: Int) -> Headers {
            Headers(limit: bucketLimit, remaining: remaining, reset: window.resetAt, resetAfter: window.resetAt - now, bucket: bucket)
        }

        if let stormUntil, now < stormUntil {
            windows[key] = window
            return .limited(headers(0), retryAfter: min(Self.stormRetryAfter, stormUntil - now), global: stormGlobal)
        }
        if window.count >= bucketLimit {
            windows[key] = window
            return .limited(headers(0), retryAfter: window.resetAt - now, global: false)
        }
        if !exemptFromGlobal {
            var globalWindow = global ?? Window(count: 0, resetAt: now + 1)
            if globalWindow.resetAt <= now { globalWindow = Window(count: 0, resetAt: now + 1) }
            if globalWindow.count >= globalLimit {
                global = globalWindow
                windows[key] = window
                return .limited(headers(bucketLimit - window.count), retryAfter: globalWindow.resetAt - now, global: true)
            }
            globalWindow.count += 1
            global = globalWindow
        }
        window.count += 1
        windows[key] = window
        return .allowed(headers(bucketLimit - window.count))
    }

    /// A stable bucket hash per route template, 32 hex digits like Discord's (two FNV-1a runs).
    static func bucketHash(_ route: String) -> String {
        func fnv(_ seed: UInt64) -> UInt64 {
            route.utf8.reduce(seed) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        }
        func hex(_ value: UInt64) -> String {
            let text = String(value, radix: 16)
            return String(repeating: "0", count: 16 - text.count) + text
        }
        return hex(fnv(0xcbf2_9ce4_8422_2325)) + hex(fnv(0x84222325_cbf29ce4))
    }
}
