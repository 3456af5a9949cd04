import FoundationEssentials
import IPC
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The Prometheus text exposition of the status snapshot: what `bot-supervisor status` shows, as
/// gauges and counters a dashboard can graph and alert on.
enum MetricsText {
    static func render(_ s: StatusSnapshot, now: Date = Date()) -> String {
        var out = ""
        func metric(_ name: String, _ help: String, _ type: String = "gauge", _ samples: [(labels: String, value: Double)]) {
            guard !samples.isEmpty else { return }
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples {
                let value = sample.value.rounded() == sample.value && abs(sample.value) < 1e15 ? String(Int64(sample.value)) : String(sample.value)
                out += name + (sample.labels.isEmpty ? "" : "{\(sample.labels)}") + " " + value + "\n"
            }
        }
        func one(_ name: String, _ help: String, _ value: Double?, _ type: String = "gauge") {
            if let value { metric(name, help, type, [("", value)]) }
        }
        let w = s.worker
        one("bot_worker_up", "1 when the worker is ready", w.state == .ready ? 1 : 0)
        metric("bot_worker_state", "The worker's state (1 for the current one)", "gauge", WorkerState.allCases.map {
            ("state=\"\($0.rawValue)\"", w.state == $0 ? 1 : 0)
        })
        one("bot_worker_restarts_total", "Worker restarts since the supervisor started", Double(w.restarts), "counter")
        one("bot_worker_heartbeat_age_seconds", "Time since the worker's last heartbeat", w.lastHeartbeatAgeMs.map { Double($0) / 1000 })
        one("bot_worker_rss_bytes", "The worker's resident memory", w.rssBytes.map(Double.init))
        one("bot_supervisor_rss_bytes", "The supervisor's resident memory", s.supervisor.rssBytes.map(Double.init))
        if let d = w.discord {
            one("bot_gateway_connected", "1 when the Gateway session is connected", d.gatewayState == "connected" ? 1 : 0)
            one("bot_gateway_latency_seconds", "Heartbeat to ACK", d.latencyMs.map { Double($0) / 1000 })
            one("bot_gateway_last_event_age_seconds", "Time since the last Gateway message", d.lastEventAgeMs.map { Double($0) / 1000 })
            one("bot_gateway_guilds", "Guilds available", Double(d.guilds))
            one("bot_session_start_remaining", "Identifies Discord still allows today", d.sessionStartRemaining.map(Double.init))
            one("bot_identifies_24h", "Identifies made in the last 24 hours", Double(d.identifiesLast24h))
            one("bot_rest_global_remaining", "REST requests left in this second of the global limit", Double(d.restGlobalRemaining))
            one("bot_rest_invalid_requests", "401/403/429 answers in the last 10 minutes", Double(d.restInvalidRequests))
            if !d.shards.isEmpty {
                metric("bot_shard_connected", "1 when the shard's Gateway session is connected", "gauge", d.shards.map { ("shard=\"\($0.id)\"", $0.state == "connected" ? 1 : 0) })
                metric("bot_shard_guilds", "Guilds available on the shard", "gauge", d.shards.map { ("shard=\"\($0.id)\"", Double($0.guilds)) })
                metric("bot_shard_latency_seconds", "Heartbeat to ACK, per shard", "gauge", d.shards.compactMap { shard in shard.latencyMs.map { ("shard=\"\(shard.id)\"", Double($0) / 1000) } })
                metric("bot_shard_events_per_second", "Dispatches a second over the last heartbeat interval, per shard", "gauge", d.shards.map { ("shard=\"\($0.id)\"", $0.eventsPerSecond) })
                metric("bot_shard_last_event_age_seconds", "Time since the shard's last Gateway message", "gauge", d.shards.compactMap { shard in shard.lastEventAgeMs.map { ("shard=\"\(shard.id)\"", Double($0) / 1000) } })
                metric("bot_shard_resumes", "Sessions the shard resumed in this worker", "gauge", d.shards.map { ("shard=\"\($0.id)\"", Double($0.resumes)) })
                metric("bot_shard_identifies", "Sessions the shard opened in this worker", "gauge", d.shards.map { ("shard=\"\($0.id)\"", Double($0.identifies)) })
            }
        }
        if let e = w.events {
            one("bot_events_received_total", "Gateway dispatches received by this worker", Double(e.received), "counter")
            one("bot_event_failures_total", "Event handler and write failures of this worker", Double(e.failed), "counter")
            one("bot_writes_committed_total", "Writes committed through the group commit by this worker", Double(e.writesCommitted), "counter")
            metric("bot_event_commit_latency_seconds", "Event arrival to commit, newest 4096", "gauge", [
                e.writeLatencyP50Ms.map { ("quantile=\"0.5\"", $0 / 1000) }, e.writeLatencyP99Ms.map { ("quantile=\"0.99\"", $0 / 1000) },
            ].compactMap { $0 })
            metric("bot_commands_total", "Slash commands and buttons answered by this worker", "counter", [
                ("outcome=\"success\"", Double(e.commandsSucceeded)), ("outcome=\"failure\"", Double(e.commandsFailed)),
            ])
        }
        if let sessions = w.sessions {
            one("bot_gateway_resumes_total", "Gateway sessions resumed since the supervisor started (a new worker taking over its predecessor's, or a reconnect)", Double(sessions.resumes), "counter")
            one("bot_gateway_identifies_total", "Gateway sessions opened anew since the supervisor started", Double(sessions.identifies), "counter")
            one("bot_gateway_events_replayed_total", "Events Discord replayed on resumes", Double(sessions.eventsReplayed), "counter")
            one("bot_gateway_duplicates_skipped_total", "Replayed events whose effects were already committed, skipped", Double(sessions.duplicatesSkipped), "counter")
            one("bot_gateway_reconciliations_total", "Reconciliations after a lost session (events may have been missed)", Double(sessions.reconciliations), "counter")
        }
        if let db = s.database {
            one("bot_database_size_bytes", "Size of the live database file", db.sizeBytes.map(Double.init))
        }
        if let b = s.backups {
            one("bot_backups", "Backups on record", Double(b.count))
            if let last = b.last, let at = Timestamp.date(last.at) {
                one("bot_backup_age_seconds", "Age of the newest backup", now.timeIntervalSince(at))
                one("bot_backup_verified", "1 when the newest backup verified", last.verified ? 1 : 0)
            }
        }
        if let h = s.health {
            func level(_ status: CheckStatus) -> Double {
                switch status {
                case .ok: 0
                case .warn: 1
                case .critical: 2
                }
            }
            one("bot_health_status", "Overall health: 0 ok, 1 warn, 2 critical", level(h.status))
            metric("bot_health_check_status", "Each health check: 0 ok, 1 warn, 2 critical", "gauge", h.checks.map { ("check=\"\($0.name)\"", level($0.status)) })
        }
        if !s.replicas.isEmpty {
            func per(_ value: (ReplicaStatus) -> Double?) -> [(labels: String, value: Double)] {
                s.replicas.compactMap { replica in value(replica).map { ("replica=\"\(replica.name)\"", $0) } }
            }
            metric("bot_replica_lag_seconds", "How far each replica's journal lags the live commit", "gauge", per { $0.lagSeconds })
            metric("bot_replica_last_sequence", "The newest journal entry shipped to each replica", "gauge", per { $0.lastSequence.map(Double.init) })
            metric("bot_replica_bytes", "Encrypted bytes shipped to each replica", "gauge", per { Double($0.bytes) })
            metric("bot_replica_up", "1 while the replica takes uploads, 0 while it is down", "gauge", per { $0.state == .down ? 0 : 1 })
            metric("bot_replica_drill_ok", "1 when the replica's last restore drill matched the live database, 0 when it failed", "gauge", per { $0.drill.result.map { $0 == "ok" ? 1 : 0 } })
            metric("bot_replica_drill_age_seconds", "Seconds since the replica's last restore drill", "gauge", per { $0.drill.ageSeconds })
            metric("bot_replica_drill_timestamp_seconds", "When the replica's last restore drill ran (Unix time)", "gauge", per { $0.drill.at.flatMap { Timestamp.date($0) }?.timeIntervalSince1970 })
        }
        metric("bot_alerts", "Alerts on record by severity (the newest 100)", "gauge", [AlertSeverity.info, .warning, .critical].map { severity in
            ("severity=\"\(severity.rawValue)\"", Double(s.alerts.filter { $0.severity == severity }.count))
        })
        return out
    }
}

/// `metrics.listen` (e.g. 127.0.0.1:9464): Prometheus text at `/metrics`, nothing else. Opt in,
/// and meant for localhost: it needs no credentials and says a lot about the bot.
struct MetricsServer: Service {
    let host: String
    let port: Int
    let render: @Sendable () async -> String
    let logger: Logger

    /// `host:port`, or nil when it is not one.
    static func parse(_ listen: String) -> (host: String, port: Int)? {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        let host = String(listen[..<colon].filter { $0 != "[" && $0 != "]" })
        return host.isEmpty ? nil : (host, port)
    }

    func run() async throws {
        let render = self.render
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHandler(render: render))
                }
            }
            .bind(host: host, port: port).get()
        logger.info("metrics listening", metadata: ["address": "\(host):\(port)"])
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}

private final class MetricsHandler: ChannelInboundHandler, @unchecked Sendable {  // used on its channel's event loop only
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let render: @Sendable () async -> String
    private var head: HTTPRequestHead?

    init(render: @escaping @Sendable () async -> String) {
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            let keepAlive = head.isKeepAlive
            let version = head.version
            guard head.method == .GET, head.uri.split(separator: "?").first == "/metrics" else {
                respond(context, version: version, status: .notFound, type: "text/plain", body: "only /metrics is served here\n", keepAlive: keepAlive)
                return
            }
            let promise = context.eventLoop.makePromise(of: String.self)
            promise.completeWithTask { await self.render() }
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { text in
                self.respond(loopBound.value, version: version, status: .ok, type: "text/plain; version=0.0.4; charset=utf-8", body: text, keepAlive: keepAlive)
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, version: HTTPVersion, status: HTTPResponseStatus, type: String, body: String, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.whenComplete { _ in context.close(promise: nil) } }
    }
}
