import AsyncHTTPClient
import FoundationEssentials
import IPC
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Sends alerts to a Discord webhook (`alerts.webhookURL`), one message each, from a queue of its
/// own: a webhook that is slow, down or rate limited never holds up the supervisor or the other
/// sinks (the log, the status snapshot, systemd's STATUS).
///
/// Discord's webhook limits are honoured: one message a second at most, a 429 waited out for its
/// `retry_after`; when more than `capacity` alerts wait, the oldest are dropped and the next
/// message says how many. The URL holds the webhook's token: it is never logged.
final class WebhookAlerts: Service, Sendable {
    private let url: Secret
    private let logger: Logger
    private let feed: AsyncStream<Alert>
    private let continuation: AsyncStream<Alert>.Continuation
    /// Alerts dropped because the queue was full, since the last message said so.
    private let dropped = Atomic<Int>(0)

    init(url: Secret, logger: Logger, capacity: Int = 50) {
        self.url = url
        self.logger = logger
        (feed, continuation) = AsyncStream.makeStream(of: Alert.self, bufferingPolicy: .bufferingNewest(capacity))
    }

    /// Queues `alert` for sending; never waits. A full queue drops its oldest alert.
    func offer(_ alert: Alert) {
        if case .dropped = continuation.yield(alert) { dropped.add(1, ordering: .relaxed) }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await alert in self.feed {
                var text = Self.content(alert)
                let lost = self.dropped.exchange(0, ordering: .relaxed)
                if lost > 0 {
                    text += "\n(\(lost) older alert\(lost == 1 ? " was" : "s were") dropped while the webhook was slow; see `bot-supervisor status`)"
                }
                await self.send(text)
                guard (try? await Task.sleep(for: .seconds(1))) != nil else { return }
            }
        }
    }

    static func content(_ alert: Alert) -> String {
        let mark = switch alert.severity {
        case .critical: "🔴 CRITICAL"
        case .warning: "🟠 WARNING"
        case .info: "🟢 INFO"
        }
        return String("**\(mark)** \(alert.message)\n\(alert.at)".prefix(2000))
    }

    private func send(_ text: String) async {
        for attempt in 1...3 {
            do {
                var request = HTTPClientRequest(url: url.reveal() + (url.reveal().contains("?") ? "&" : "?") + "wait=true")
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.headers.add(name: "User-Agent", value: "DiscordBot (https://github.com/discord-bot-supervisor, \(BotVersion.current))")
                let body: JSONValue = .object([
                    "content": .string(text), "username": .string("bot-supervisor"),
                    "allowed_mentions": .object(["parse": .array([])]),
                ])
                request.body = .bytes(ByteBuffer(bytes: try JSONLine.encode(body).utf8))
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let bytes = try await response.body.collect(upTo: 1 << 20)
                let status = Int(response.status.code)
                if (200..<300).contains(status) { return }
                if status == 429 {
                    let answer = try? JSONLine.decode(JSONValue.self, from: String(buffer: bytes))
                    let wait = answer?["retry_after"]?.doubleValue ?? 1
                    try await Task.sleep(for: .milliseconds(Int64(min(wait, 60) * 1000)))
                    continue
                }
                logger.warning("the alert webhook refused an alert", metadata: [LogKey.status: "\(status)", "attempt": "\(attempt)"])
                if (400..<500).contains(status) { return }  // a bad or deleted webhook: retrying will not help
            } catch {
                logger.warning("the alert webhook could not be reached", metadata: [LogKey.error: "\(Self.redacted(error, url))", "attempt": "\(attempt)"])
            }
            try? await Task.sleep(for: .seconds(Double(attempt)))
        }
    }

    /// An error's text with the webhook URL (and so its token) taken out.
    static func redacted(_ error: any Error, _ url: Secret) -> String {
        "\(error)".replacingOccurrences(of: url.reveal(), with: "<webhook URL>")
    }
}
