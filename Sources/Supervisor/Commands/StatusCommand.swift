import ArgumentParser
import FoundationEssentials
import IPC

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what the supervisor and the bot are doing now."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .status), timeoutSeconds: 10, showsProgress: false)
        try options.finish(envelope, as: StatusSnapshot.self) { StatusTable.render($0) }
    }
}

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Run every health check now and print the results (exit 1 when one is critical)."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .health), timeoutSeconds: 60, showsProgress: false)
        try options.finish(envelope, as: HealthStatus.self) { StatusTable.render(health: $0) }
    }
}

/// The human form of a status snapshot.
enum StatusTable {
    static func render(_ s: StatusSnapshot, now: Date = Date()) -> String {
        var rows: [(String, String)] = []
        rows.append(("supervisor", "\(s.supervisor.state), pid \(s.supervisor.pid), version \(s.supervisor.version), up \(age(since: s.supervisor.startedAt, now: now))" + (s.supervisor.rssBytes.map { ", RSS \(megabytes($0))" } ?? "")))

        let w = s.worker
        var worker = w.state.rawValue
        if let pid = w.pid { worker += ", pid \(pid)" }
        if let startedAt = w.startedAt { worker += ", up \(age(since: startedAt, now: now))" }
        worker += ", \(w.restarts) restart\(w.restarts == 1 ? "" : "s")"
        rows.append(("worker", worker))
        if let ageMs = w.lastHeartbeatAgeMs { rows.append(("  heartbeat", "\(ageMs / 1000).\(ageMs % 1000 / 100) s ago")) }
        if let startup = w.lastStartupMs { rows.append(("  start-up", "\(startup) ms to ready")) }
        if let next = w.nextStartAt { rows.append(("  next start", next)) }
        if let detail = w.detail { rows.append(("  detail", detail)) }
        if let exit = w.lastExit { rows.append(("  last exit", "\(exit.reason) (\(exit.at))")) }
        if let startup = w.startup {
            let problems = startup.checks.filter { $0.status != .ok }
            rows.append(("  start-up checks", problems.isEmpty ? "ok (\(startup.checks.count) at \(startup.at))" : problems.map { "\($0.name) \($0.status.rawValue): \($0.detail)" }.joined(separator: "; ")))
        }
        if let rss = w.rssBytes { rows.append(("  memory", "RSS \(megabytes(rss))")) }
        if let d = w.discord {
            var gateway = "\(d.gatewayState) (\(d.mode)), \(d.guilds) guild\(d.guilds == 1 ? "" : "s")"
            if let latency = d.latencyMs { gateway += ", latency \(latency) ms" }
            if let age = d.lastEventAgeMs { gateway += ", last event \(age / 1000).\(age % 1000 / 100) s ago" }
            rows.append(("  gateway", gateway))
            if d.shards.count > 1 {
                for shard in d.shards {
                    var line = "\(shard.state), \(shard.guilds) guild\(shard.guilds == 1 ? "" : "s"), \(shard.eventsPerSecond) events/s"
                    if let latency = shard.latencyMs { line += ", latency \(latency) ms" }
                    if let age = shard.lastEventAgeMs { line += ", last event \(age / 1000).\(age % 1000 / 100) s ago" }
                    line += ", \(shard.resumes) resumed, \(shard.identifies) identified"
                    rows.append(("    shard \(shard.id)", line))
                }
            }
            var identifies = "\(d.identifiesLast24h) in 24 h"
            if let remaining = d.sessionStartRemaining, let total = d.sessionStartTotal { identifies += ", \(remaining) of \(total) left today" }
            if let next = d.nextIdentifyAt { identifies += ", next held until \(next)" }
            rows.append(("  identifies", identifies))
            if let sessions = w.sessions {
                rows.append(("  sessions", "\(sessions.resumes) resumed, \(sessions.identifies) opened, \(sessions.eventsReplayed) events replayed, "
                    + "\(sessions.duplicatesSkipped) duplicates skipped, \(sessions.reconciliations) reconciliations"))
                if let last = sessions.lastReconciliation { rows.append(("  last reconciled", last)) }
            }
            rows.append(("  REST", "\(d.restGlobalRemaining)/s headroom, \(d.restInvalidRequests) invalid (401/403/429) in 10 min"))
            if let error = d.lastError { rows.append(("  Discord error", error)) }
            if let sandbox = d.sandboxURL { rows.append(("  sandbox", "\(sandbox) (state: \(sandbox)/sandbox/state)")) }
        }
        if let e = w.events {
            var events = "\(e.received) received, \(e.writesCommitted) writes committed, \(e.failed) failed"
            if let p50 = e.writeLatencyP50Ms, let p99 = e.writeLatencyP99Ms { events += ", event→commit p50 \(p50) ms p99 \(p99) ms" }
            rows.append(("  events", events))
            rows.append(("  commands", "\(e.commandsSucceeded) answered, \(e.commandsFailed) failed"))
        }

        if let operation = s.operation {
            rows.append(("operation", "\(operation.name): \(operation.phase) \(Int(operation.progress * 100))% (since \(operation.startedAt))"))
        }
        rows.append(("database", s.database.map { db in
            "\(db.path)" + (db.sizeBytes.map { ", \(megabytes($0))" } ?? "") + (db.lastCheck.map { ", check \($0.result) at \($0.at)" } ?? "")
        } ?? "-"))
        rows.append(("backups", s.backups.map { b in
            "\(b.count)" + (b.last.map { ", last \($0.id) at \($0.at) (\($0.reason), \($0.verified ? "verified" : "NOT verified"))" } ?? "")
        } ?? "-"))
        if let j = s.journal {
            rows.append(("journal", "sequence \(j.sequence)" + (j.lastCommitAt.map { ", last commit \($0)" } ?? "")
                + (j.timeline.map { ", timeline \($0)" } ?? "") + (j.unjournaled > 0 ? ", \(j.unjournaled) transactions NOT journaled" : "")))
            for location in j.locations {
                rows.append(("  \(location.path)", "\(location.state), at \(location.lastSequence), lag \(location.lag), \(megabytes(location.sizeBytes)) in \(location.segments) segment\(location.segments == 1 ? "" : "s")"
                    + (location.error.map { ": \($0)" } ?? "")))
            }
        } else {
            rows.append(("journal", "-"))
        }
        for r in s.replicas {
            var line = "\(r.state.rawValue), lag \(r.lagSeconds) s, sequence \(r.lastSequence.map(String.init) ?? "-"), \(megabytes(Int(r.bytes))) shipped"
            if let at = r.lastShippedAt { line += ", last at \(at)" }
            if let error = r.lastError, r.state == .down { line += ", error: \(error.prefix(200))" }
            rows.append(("replica \(r.name)", line))
            if let at = r.drill.at {
                let age = r.drill.ageSeconds.map { $0 < 7200 ? "\(Int($0 / 60)) min ago" : "\(Int($0 / 3600)) h ago" } ?? at
                rows.append(("  drill", "\(r.drill.result == "ok" ? "ok" : "FAILED") \(age)" + (r.drill.result == "ok" ? "" : ": \(r.drill.detail?.prefix(300) ?? "")")))
            }
        }
        rows.append(("health", s.health.map { h in
            "\(h.status.rawValue)" + (h.lastRunAt.map { " at \($0)" } ?? "")
        } ?? "-"))
        for check in s.health?.checks ?? [] {
            rows.append(("  \(check.name)", "\(check.status.rawValue): \(check.detail)"))
        }
        if s.alerts.isEmpty {
            rows.append(("alerts", "none"))
        } else {
            for (index, alert) in s.alerts.prefix(10).enumerated() {
                rows.append((index == 0 ? "alerts" : "", "\(alert.at) \(alert.severity.rawValue.uppercased()) \(alert.message)"))
            }
            if s.alerts.count > 10 { rows.append(("", "… \(s.alerts.count - 10) older (status --json shows all)")) }
        }

        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0 + String(repeating: " ", count: width - $0.0.count) + "  " + $0.1 + "\n" }.joined()
    }

    static func render(health: HealthStatus) -> String {
        var rows = [["check", "status", "detail"]]
        for check in health.checks { rows.append([check.name, check.status.rawValue, check.detail]) }
        return "health \(health.status.rawValue)" + (health.lastRunAt.map { " at \($0)" } ?? "") + "\n" + columns(rows)
    }

    /// Left-aligned columns separated by two spaces, one row per line.
    static func columns(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: "  ")
                .replacing(/\s+$/, with: "") + "\n"
        }.joined()
    }

    static func age(since iso: String, now: Date) -> String {
        guard let date = Timestamp.date(iso) else { return "?" }
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return "\(seconds / 60) min" }
        if seconds < 172_800 { return "\(seconds / 3600) h" }
        return "\(seconds / 86400) days"
    }

    static func megabytes(_ bytes: Int) -> String {
        let tenths = bytes * 10 / 1_048_576
        return "\(tenths / 10).\(tenths % 10) MB"
    }
}
