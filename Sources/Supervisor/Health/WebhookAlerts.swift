import AsyncHTTPClient
import FoundationEssentials
import IPC
import Logging
import NIOCore
import NIOHTTP1

/// Sends alerts to a Discord webhook (`alerts.webhookURL`), one message each, from a queue of its
/// own: a webhook that is slow, down or rate limited never holds up the supervisor or the other
/// sinks (the log, the status snapshot, systemd's STATUS).
///
/// Discord's webhook limits are honoured: one message a second at most, a 429 waited out for its
/// `retry_after`; when more than `capacity` alerts wait, the oldest are dropped and the next
/// message says how many. The URL holds the webhook's token: it is never logged.
actor WebhookAlerts {
    private let url: Secret
    private let logger: Logger
    private let capacity: Int
    private var queue: [Alert] = []
    private var dropped = 0
    private var sending = false
    private(set) var delivered = 0
    private(set) var failures = 0

    init(url: Secret, logger: Logger, capacity: Int = 50) {
        self.url = url
        self.logger = logger
        self.capacity = capacity
    }

    func enqueue(_ alert: Alert) {
        queue.append(alert)
        if queue.count > capacity {
            queue.removeFirst(queue.count - capacity)
            dropped += 1
        }
        if !sending {
            sending = true
            Task { await self.drain() }
        }
    }

    private func drain() async {
        while !queue.isEmpty {
            let alert = queue.removeFirst()
            var text = Self.content(alert)
            if dropped > 0 {
                text += "\n(\(dropped) older alert\(dropped == 1 ? " was" : "s were") dropped while the webhook was slow; see `bot-supervisor status`)"
                dropped = 0
            }
            await send(text)
            try? await Task.sleep(for: .seconds(1))
        }
        sending = false
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
                if (200..<300).contains(status) {
                    delivered += 1
                    return
                }
                if status == 429 {
                    let answer = try? JSONLine.decode(JSONValue.self, from: String(buffer: bytes))
                    let wait = answer?["retry_after"]?.doubleValue ?? 1
                    try await Task.sleep(for: .milliseconds(Int64(min(wait, 60) * 1000)))
                    continue
                }
                failures += 1
                logger.warning("the alert webhook refused an alert", metadata: [LogKey.status: "\(status)", "attempt": "\(attempt)"])
                if (400..<500).contains(status) { return }  // a bad or deleted webhook: retrying will not help
            } catch {
                failures += 1
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
