import FoundationEssentials
import IPC

/// The health checks' verdicts as pure functions of what was measured, so that every threshold
/// is unit tested without a running bot.
enum HealthRules {
    typealias Check = HealthStatus.Check

    static let backupWarnAge: Double = 25 * 3600
    static let backupCriticalAge: Double = 26 * 3600
    static let rssWarnBytes = 512 << 20
    static let rssCriticalBytes = 1024 << 20

    /// The newest verified backup's age: over 26 h is critical (the daily one was missed twice
    /// over), over 25 h a warning.
    static func backupAge(newest: Date?, now: Date) -> Check {
        guard let newest else {
            return Check(name: "backups", status: .critical, detail: "no verified backup exists: run `bot-supervisor backup` and check the backup locations")
        }
        let age = now.timeIntervalSince(newest)
        let text = "newest verified backup \(hours(age)) old"
        if age > backupCriticalAge { return Check(name: "backups", status: .critical, detail: text + " (over 26 h: the daily backup is failing; see supervisor.log)") }
        if age > backupWarnAge { return Check(name: "backups", status: .warn, detail: text + " (over 25 h)") }
        return Check(name: "backups", status: .ok, detail: text)
    }

    /// Free space where the bot writes: under 5 % or 500 MB critical, under 10 % or 2 GB a warning.
    static func disk(name: String, path: String, free: Int64?, total: Int64?) -> Check {
        guard let free, let total, total > 0 else {
            return Check(name: name, status: .critical, detail: "\(path) cannot be examined (missing or not mounted?)")
        }
        let share = Double(free) / Double(total)
        let text = "\(path): \(gigabytes(free)) free of \(gigabytes(total)) (\(Int((share * 100).rounded())) %)"
        if share < 0.05 || free < 500 << 20 { return Check(name: name, status: .critical, detail: text + ": free space now or writes will fail") }
        if share < 0.10 || free < 2 << 30 { return Check(name: name, status: .warn, detail: text) }
        return Check(name: name, status: .ok, detail: text)
    }

    static func memory(worker: Int?, supervisor: Int?) -> Check {
        let largest = max(worker ?? 0, supervisor ?? 0)
        let text = "worker RSS \(worker.map(megabytes) ?? "unknown"), supervisor RSS \(supervisor.map(megabytes) ?? "unknown")"
        if largest >= rssCriticalBytes { return Check(name: "memory", status: .critical, detail: text + " (over 1 GB: a leak? restart the worker and report it)") }
        if largest >= rssWarnBytes { return Check(name: "memory", status: .warn, detail: text + " (over 512 MB)") }
        return Check(name: "memory", status: .ok, detail: text)
    }

    /// The worker: running, heartbeating, its gateway connected.
    static func worker(state: WorkerState, heartbeatAgeMs: Int?, heartbeatTimeoutMs: Int, discord: DiscordReport?) -> Check {
        switch state {
        case .ready:
            break
        case .starting, .stopping:
            return Check(name: "worker", status: .warn, detail: "worker \(state.rawValue)")
        case .unhealthy:
            return Check(name: "worker", status: .warn, detail: "worker unhealthy")
        case .backoff, .crashLoop, .failed, .stopped:
            return Check(name: "worker", status: .critical, detail: "worker \(state.rawValue): see `bot-supervisor status` for the last exit")
        }
        if let age = heartbeatAgeMs, age > heartbeatTimeoutMs / 2 {
            return Check(name: "worker", status: .warn, detail: "last heartbeat \(age) ms ago")
        }
        guard let discord else { return Check(name: "worker", status: .ok, detail: "ready") }
        if discord.gatewayState != "connected" {
            return Check(name: "worker", status: .warn, detail: "ready, gateway \(discord.gatewayState)" + (discord.lastError.map { ": \($0)" } ?? ""))
        }
        return Check(name: "worker", status: .ok, detail: "ready, gateway connected" + (discord.latencyMs.map { ", latency \($0) ms" } ?? ""))
    }

    /// Discord's limits: REST headroom, invalid requests (Cloudflare bans at 10,000 in 10 min),
    /// identifies left today.
    static func discordLimits(_ discord: DiscordReport?) -> Check {
        guard let discord else { return Check(name: "discord-limits", status: .ok, detail: "no report from the worker yet") }
        var status = CheckStatus.ok
        var notes: [String] = []
        if discord.restInvalidRequests >= 5000 {
            status = .critical
            notes.append("\(discord.restInvalidRequests) invalid REST requests in 10 min (ban at 10,000)")
        } else if discord.restInvalidRequests >= 1000 {
            status = max(status, .warn)
            notes.append("\(discord.restInvalidRequests) invalid REST requests in 10 min")
        }
        if let remaining = discord.sessionStartRemaining {
            if remaining < 10 {
                status = .critical
                notes.append("only \(remaining) identifies left today: restarts must stop")
            } else if remaining < 100 {
                status = max(status, .warn)
                notes.append("\(remaining) identifies left today")
            }
        }
        let summary = "REST \(discord.restGlobalRemaining)/s headroom, \(discord.restInvalidRequests) invalid in 10 min, identifies left \(discord.sessionStartRemaining.map(String.init) ?? "unknown")"
        return Check(name: "discord-limits", status: status, detail: notes.isEmpty ? summary : notes.joined(separator: "; "))
    }

    /// How long a reconciliation keeps the `sessions` check at warn: events may have been missed.
    static let reconciliationWarnSeconds: Double = 3600

    /// The Gateway sessions: resumes, identifies, replays and duplicates; a warning for an hour
    /// after a reconciliation (a session was lost, and events with it).
    static func sessions(_ report: SessionReport?, now: Date) -> Check {
        guard let report else { return Check(name: "sessions", status: .ok, detail: "no report from the worker yet") }
        var detail = "\(report.resumes) resumes, \(report.identifies) identifies, \(report.eventsReplayed) events replayed, "
            + "\(report.duplicatesSkipped) duplicates skipped, \(report.reconciliations) reconciliations"
        if let text = report.lastReconciliation, let at = report.lastReconciliationAt.flatMap({ Timestamp.date($0) }),
           now.timeIntervalSince(at) < reconciliationWarnSeconds {
            detail += "; last: \(text)"
            return Check(name: "sessions", status: .warn, detail: detail)
        }
        return Check(name: "sessions", status: .ok, detail: detail)
    }

    /// Errors in the tracker's window.
    static func errorRate(errors: Int, window: Duration, threshold: Int) -> Check {
        let minutes = window.components.seconds / 60
        if errors >= threshold * 5 { return Check(name: "errors", status: .critical, detail: "\(errors) errors in \(minutes) min: see errors.log") }
        if errors >= threshold { return Check(name: "errors", status: .warn, detail: "\(errors) errors in \(minutes) min: see errors.log") }
        return Check(name: "errors", status: .ok, detail: "\(errors) errors in \(minutes) min")
    }

    /// Commands answered since the last run: under 95 % success is a warning.
    static func commands(succeeded: Int, failed: Int) -> Check {
        let total = succeeded + failed
        guard total > 0 else { return Check(name: "commands", status: .ok, detail: "no commands since the last run") }
        let rate = Double(succeeded) / Double(total)
        let text = "\(succeeded) of \(total) commands succeeded (\(Int((rate * 100).rounded(.down))) %)"
        return Check(name: "commands", status: rate < 0.95 ? .warn : .ok, detail: rate < 0.95 ? text + ": see errors.log" : text)
    }

    /// The off-host replicas: a journal lagging past `maxLagSeconds` is a warning, past 10× (or a
    /// replica down for longer than that) critical; a replica down for less is a warning.
    static func replicas(_ replicas: [ReplicaStatus], maxLagSeconds: Double, now: Date) -> Check {
        guard !replicas.isEmpty else { return Check(name: "replicas", status: .ok, detail: "no replicas configured") }
        var worst = CheckStatus.ok
        var details: [String] = []
        for replica in replicas {
            let downFor = replica.downSince.flatMap { Timestamp.date($0) }.map { now.timeIntervalSince($0) }
            var status = CheckStatus.ok
            var text = "\(replica.name): \(replica.state.rawValue), lag \(replica.lagSeconds) s"
            if replica.lagSeconds > 10 * maxLagSeconds || (downFor ?? 0) > 10 * maxLagSeconds {
                status = .critical
            } else if replica.lagSeconds > maxLagSeconds || replica.state == .down {
                status = .warn
            }
            if let downFor { text += ", down for \(Int(downFor)) s" }
            if replica.state == .down, let error = replica.lastError { text += " (\(error.prefix(200)))" }
            details.append(text)
            if status == .critical || (status == .warn && worst == .ok) { worst = status }
        }
        return Check(name: "replicas", status: worst, detail: details.joined(separator: "; ") + " (bound \(maxLagSeconds) s)")
    }

    /// The restore drills: a failed drill is critical; none for twice `intervalHours` (or none yet
    /// once the supervisor has run that long) a warning.
    static func drills(_ replicas: [ReplicaStatus], intervalHours: Double, runningFor: TimeInterval, now: Date) -> Check {
        guard !replicas.isEmpty else { return Check(name: "drills", status: .ok, detail: "no replicas configured") }
        var worst = CheckStatus.ok
        var details: [String] = []
        let stale = 2 * intervalHours * 3600
        for replica in replicas {
            var status = CheckStatus.ok
            let text: String
            if let at = replica.drill.at, let date = Timestamp.date(at) {
                let age = now.timeIntervalSince(date)
                if replica.drill.result != "ok" {
                    status = .critical
                    text = "\(replica.name): the drill at \(at) FAILED: \(replica.drill.detail?.prefix(300) ?? "")"
                } else if age > stale {
                    status = .warn
                    text = "\(replica.name): the last drill is \(Int(age / 3600)) h old (every \(intervalHours) h expected)"
                } else {
                    text = "\(replica.name): ok at \(at) (\(Int(age / 60)) min ago)"
                }
            } else if runningFor > stale {
                status = .warn
                text = "\(replica.name): no drill yet after \(Int(runningFor / 3600)) h"
            } else {
                text = "\(replica.name): no drill yet (the first follows the first snapshot shipped)"
            }
            details.append(text)
            if status == .critical || (status == .warn && worst == .ok) { worst = status }
        }
        return Check(name: "drills", status: worst, detail: details.joined(separator: "; "))
    }

    static func overall(_ checks: [Check]) -> CheckStatus {
        checks.map(\.status).max() ?? .ok
    }

    static func hours(_ seconds: Double) -> String {
        seconds < 3600 ? "\(Int(seconds / 60)) min" : "\(Int(seconds / 360) / 10).\(Int(seconds / 360) % 10) h"
    }

    static func megabytes(_ bytes: Int) -> String { "\(bytes >> 20) MB" }

    static func gigabytes(_ bytes: Int64) -> String {
        let tenths = (bytes * 10) >> 30
        return "\(tenths / 10).\(tenths % 10) GB"
    }
}
