import AsyncHTTPClient
import FoundationEssentials
import IPC
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// The outside heartbeat (`alerts.heartbeatURL`), a dead man's switch in the manner of
/// healthchecks.io: after every health run the URL gets a GET, or `<url>/fail` a POST naming the
/// critical checks when one is critical. A supervisor that is down, hung or cut off stops
/// pinging, and the service on the other side raises the alarm the supervisor itself cannot.
///
/// The health run only hands its result over (`offer`, which never waits); this service sends the
/// newest one and drops those it had no time for. The URL is the credential: it is never logged,
/// never in an alert or the status, and is named `alerts.heartbeatURL` instead.
final class HeartbeatPinger: Service, Sendable {
    /// What one ping sends.
    struct Ping: Sendable, Equatable {
        var url: String
        var method: HTTPMethod
        var body: String?
    }

    /// When the last ping went out, and how it ended.
    struct Outcome: Sendable, Equatable {
        var at: String
        var ok: Bool
        var detail: String
    }

    /// healthchecks.io shows up to 10 KB of a ping's body.
    static let maxBodyBytes = 10_000

    private let url: Secret
    private let logger: Logger
    private let timeout: TimeAmount
    private let feed: AsyncStream<HealthStatus>
    private let continuation: AsyncStream<HealthStatus>.Continuation
    private let last = Mutex<Outcome?>(nil)

    init(url: Secret, logger: Logger, timeout: TimeAmount = .seconds(10)) {
        self.url = url
        self.logger = logger
        self.timeout = timeout
        (feed, continuation) = AsyncStream.makeStream(of: HealthStatus.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Hands a health run's result over; never waits. An older result not yet sent is dropped.
    func offer(_ status: HealthStatus) {
        continuation.yield(status)
    }

    /// The last ping's time and result, nil before the first.
    var lastOutcome: Outcome? { last.withLock { $0 } }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await status in self.feed {
                await self.send(Self.ping(for: status, url: self.url.reveal()))
            }
        }
    }

    /// The decision, without I/O: a GET of the URL when no check is critical, else a POST to
    /// `<url>/fail` whose body names each critical check (then each warning) with its detail.
    static func ping(for status: HealthStatus, url: String) -> Ping {
        let critical = status.checks.filter { $0.status == .critical }
        guard !critical.isEmpty else { return Ping(url: url, method: .GET, body: nil) }
        let warnings = status.checks.filter { $0.status == .warn }
        var body = "\(critical.count) health check\(critical.count == 1 ? " is" : "s are") critical: \(critical.map(\.name).joined(separator: ", "))\n"
        for check in critical { body += "critical \(check.name): \(check.detail)\n" }
        for check in warnings { body += "warn \(check.name): \(check.detail)\n" }
        return Ping(url: failURL(url), method: .POST, body: truncated(body, to: maxBodyBytes))
    }

    /// `<url>/fail`, before the query string if there is one.
    static func failURL(_ url: String) -> String {
        let parts = url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var path = String(parts[0])
        while path.hasSuffix("/") { path.removeLast() }
        return path + "/fail" + (parts.count > 1 ? "?" + parts[1] : "")
    }

    /// At most `limit` bytes of UTF-8, cut at a character boundary.
    static func truncated(_ text: String, to limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        let marker = "\n(truncated)"
        var result = ""
        var used = 0
        for character in text {
            let size = String(character).utf8.count
            guard used + size + marker.utf8.count <= limit else { break }
            result.append(character)
            used += size
        }
        return result + marker
    }

    private func send(_ ping: Ping) async {
        let outcome: Outcome
        do {
            var request = HTTPClientRequest(url: ping.url)
            request.method = ping.method
            request.headers.add(name: "User-Agent", value: "bot-supervisor/\(BotVersion.current)")
            if let body = ping.body {
                request.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
                request.body = .bytes(ByteBuffer(string: body))
            }
            let response = try await HTTPClient.shared.execute(request, timeout: timeout)
            _ = try await response.body.collect(upTo: 64 << 10)
            let status = Int(response.status.code)
            let ok = (200..<300).contains(status)
            outcome = Outcome(at: Timestamp.string(), ok: ok, detail: "\(ping.body == nil ? "ok" : "fail") ping answered \(status)")
            if !ok {
                logger.warning("the outside heartbeat refused a ping", metadata: [
                    LogKey.status: "\(status)", "target": "alerts.heartbeatURL", LogKey.outcome: "\(ping.body == nil ? "ok" : "fail")",
                ])
            }
        } catch {
            let text = Self.redacted(error, url)
            outcome = Outcome(at: Timestamp.string(), ok: false, detail: "not sent: \(text)")
            logger.warning("the outside heartbeat could not be pinged", metadata: [
                LogKey.error: "\(text)", "target": "alerts.heartbeatURL", LogKey.outcome: "\(ping.body == nil ? "ok" : "fail")",
            ])
        }
        last.withLock { $0 = outcome }
    }

    /// An error's text with the URL (the credential) taken out.
    static func redacted(_ error: any Error, _ url: Secret) -> String {
        "\(error)".replacingOccurrences(of: failURL(url.reveal()), with: "<alerts.heartbeatURL>/fail")
            .replacingOccurrences(of: url.reveal(), with: "<alerts.heartbeatURL>")
    }
}
