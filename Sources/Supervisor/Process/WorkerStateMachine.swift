import IPC

#if canImport(Glibc)
import Glibc
#endif

/// Every decision about the worker's life, as one state-by-event table (in the manner of s6 and
/// runit): no I/O, no clock of its own. `WorkerSupervisor` feeds it events with the time they
/// happened and performs the actions it returns.
struct WorkerStateMachine: Sendable {
    struct Settings: Sendable, Equatable {
        var heartbeatTimeout: Duration
        var stopGrace: Duration
        /// `worker.memoryMaxBytes`: above it in two heartbeats in a row, a graceful restart.
        var memoryMaxBytes: Int64? = nil
    }

    enum Timer: Sendable, Equatable, Hashable {
        /// Fires when the newest heartbeat would be `heartbeatTimeout` old.
        case heartbeatCheck
        /// Fires `stopGrace` after asking the worker to stop.
        case kill
        /// Fires when a backed-off restart is due.
        case restart
    }

    enum StopReason: Sendable, Equatable {
        case hung(silentFor: Duration)
        case restartRequested(by: String)
        case memoryLimit(rssBytes: Int64, limitBytes: Int64)
        case shutdown
        case maintenance(MaintenanceTask)
    }

    enum Event: Sendable, Equatable {
        case start
        case spawned(pid: Int32)
        case spawnFailed(message: String)
        case connected(pid: Int32)
        case ready(pid: Int32)
        /// `rssBytes`: the worker's resident memory at this heartbeat, when known.
        case heartbeat(pid: Int32, healthy: Bool, detail: String?, rssBytes: Int64? = nil)
        case fatalReported(pid: Int32, message: String)
        case exited(pid: Int32, status: ExitStatus)
        case timerFired(Timer, generation: Int)
        case restartRequested(by: String)
        case shutdownRequested
        /// Work on the database that needs the worker stopped (a check, a restore).
        case maintenanceRequested(MaintenanceTask)
        case maintenanceFinished(MaintenanceOutcome)
    }

    enum Action: Sendable, Equatable {
        case spawn
        /// Ask the worker over IPC to shut down (SIGTERM if it has no connection yet).
        case requestShutdown(pid: Int32, reason: String)
        /// Send a signal to the worker's process group.
        case signal(pid: Int32, signal: Int32)
        case startTimer(Timer, generation: Int, after: Duration)
        case alert(AlertSeverity, String)
        /// The worker is ready for the first time since the supervisor started: READY=1.
        case firstReady
        /// The worker is down for good after a shutdown request: the supervision loop may end.
        case finished
        /// Run the task (the worker is stopped), then report `maintenanceFinished`.
        case performMaintenance(MaintenanceTask)
    }

    enum Phase: Sendable, Equatable {
        case idle
        case starting(pid: Int32, since: ContinuousClock.Instant)
        case running(pid: Int32, since: ContinuousClock.Instant)
        case stopping(pid: Int32, reason: StopReason)
        case waiting(until: ContinuousClock.Instant)
        case maintenance(MaintenanceTask)
        case failed(message: String)
        case stopped
    }

    struct Exit: Sendable, Equatable {
        var status: ExitStatus?
        var reason: String
    }

    let settings: Settings
    private(set) var policy: RestartPolicy
    private(set) var phase: Phase = .idle
    private(set) var restarts = 0
    private(set) var lastExit: Exit?
    private(set) var lastHeartbeat: ContinuousClock.Instant?
    private(set) var lastStartup: Duration?
    private(set) var healthy = true
    private(set) var healthDetail: String?
    private(set) var inCrashLoop = false
    private(set) var shuttingDown = false
    private var spawnedBefore = false
    private var announcedReady = false
    private var fatalMessage: String?
    /// Heartbeats in a row of the current worker with its RSS above `memoryMaxBytes`.
    private(set) var heartbeatsAboveMemoryLimit = 0
    private var generations: [Timer: Int] = [:]

    init(settings: Settings, policy: RestartPolicy) {
        self.settings = settings
        self.policy = policy
    }

    // MARK: - What the status snapshot shows

    var state: WorkerState {
        switch phase {
        case .idle, .stopped: .stopped
        case .starting: inCrashLoop ? .crashLoop : .starting
        case .running: healthy ? .ready : .unhealthy
        case .stopping: .stopping
        case .waiting: inCrashLoop ? .crashLoop : .backoff
        case .maintenance(.startupCheck): .starting
        case .maintenance: .stopped
        case .failed: .failed
        }
    }

    var pid: Int32? {
        switch phase {
        case .starting(let pid, _), .running(let pid, _), .stopping(let pid, _): pid
        default: nil
        }
    }

    var detail: String? {
        switch phase {
        case .failed(let message): message
        case .maintenance(let task): task.summary
        case .running where !healthy: healthDetail
        case .waiting, .starting:
            inCrashLoop ? "\(policy.recentFailures.count) failures in the last 10 minutes; last: \(lastExit?.reason ?? "unknown")" : nil
        default: nil
        }
    }

    // MARK: - The table

    mutating func handle(_ event: Event, at now: ContinuousClock.Instant) -> [Action] {
        switch event {
        case .start:
            switch phase {
            case .idle, .stopped, .failed, .waiting: return shuttingDown ? [] : spawn()
            default: return []
            }

        case .maintenanceRequested(let task):
            switch phase {
            case .starting, .running:
                return stop(.maintenance(task))
            case .stopping(let pid, let reason):
                if reason != .shutdown { phase = .stopping(pid: pid, reason: .maintenance(task)) }
                return []
            case .idle, .waiting, .failed, .stopped:
                guard !shuttingDown else { return [] }
                cancel(.restart)
                phase = .maintenance(task)
                return [.performMaintenance(task)]
            case .maintenance:
                return []
            }

        case .maintenanceFinished(let outcome):
            guard case .maintenance = phase else { return [] }
            if shuttingDown { return finish() }
            if outcome.startWorker { return spawn() }
            phase = .failed(message: outcome.message)
            return []

        case .spawned(let pid):
            phase = .starting(pid: pid, since: now)
            lastHeartbeat = now
            healthy = true
            healthDetail = nil
            fatalMessage = nil
            heartbeatsAboveMemoryLimit = 0
            return [startTimer(.heartbeatCheck, after: settings.heartbeatTimeout)]

        case .spawnFailed(let message):
            return failure(Exit(status: nil, reason: "could not start the worker: \(message)"), at: now)

        case .connected(let pid):
            guard pid == self.pid else { return [] }
            lastHeartbeat = now
            return []

        case .ready(let pid):
            guard case .starting(pid, let since) = phase else { return [] }
            phase = .running(pid: pid, since: now)
            lastHeartbeat = now
            lastStartup = now - since
            inCrashLoop = false
            policy.workerBecameReady(at: now)
            if announcedReady { return [] }
            announcedReady = true
            return [.firstReady]

        case .heartbeat(let pid, let healthy, let detail, let rssBytes):
            guard pid == self.pid else { return [] }
            lastHeartbeat = now
            self.healthy = healthy
            self.healthDetail = healthy ? nil : detail
            return checkMemory(rssBytes)

        case .fatalReported(let pid, let message):
            guard pid == self.pid else { return [] }
            fatalMessage = message
            return []

        case .exited(let pid, let status):
            guard pid == self.pid else { return [] }
            return exited(status, at: now)

        case .timerFired(let timer, let generation):
            guard generations[timer] == generation else { return [] }
            return timerFired(timer, at: now)

        case .restartRequested(let requester):
            switch phase {
            case .starting, .running: return stop(.restartRequested(by: requester))
            case .waiting, .failed, .stopped, .idle: return shuttingDown ? [] : spawn()
            case .stopping, .maintenance: return []
            }

        case .shutdownRequested:
            shuttingDown = true
            switch phase {
            case .starting, .running:
                return stop(.shutdown)
            case .stopping(let pid, _):
                phase = .stopping(pid: pid, reason: .shutdown)
                return []
            case .maintenance:
                // Finishes when the task reports back; a half-done restore is never abandoned.
                return []
            case .idle, .waiting, .failed, .stopped:
                phase = .stopped
                cancel(.restart)
                return [.finished]
            }
        }
    }

    private mutating func timerFired(_ timer: Timer, at now: ContinuousClock.Instant) -> [Action] {
        switch (timer, phase) {
        case (.heartbeatCheck, .starting), (.heartbeatCheck, .running):
            let silence = now - (lastHeartbeat ?? now)
            if silence >= settings.heartbeatTimeout {
                return stop(.hung(silentFor: silence))
            }
            return [startTimer(.heartbeatCheck, after: settings.heartbeatTimeout - silence)]
        case (.kill, .stopping(let pid, _)):
            return [.signal(pid: pid, signal: SIGKILL)]
        case (.restart, .waiting):
            return spawn()
        default:
            return []
        }
    }

    private mutating func stop(_ reason: StopReason) -> [Action] {
        guard let pid else { return [] }
        phase = .stopping(pid: pid, reason: reason)
        cancel(.heartbeatCheck)
        let kill = startTimer(.kill, after: settings.stopGrace)
        switch reason {
        case .hung(let silence):
            // SIGCONT lets a stopped (SIGSTOP) worker act on the SIGTERM.
            return [
                .alert(.warning, "worker pid \(pid) is hung (no heartbeat for \(Self.seconds(silence))); replacing it"),
                .signal(pid: pid, signal: SIGTERM), .signal(pid: pid, signal: SIGCONT), kill,
            ]
        case .restartRequested(let requester):
            return [.requestShutdown(pid: pid, reason: "restart requested by \(requester)"), kill]
        case .memoryLimit(let rss, let limit):
            return [
                .alert(.warning, Self.memoryLimitText(rss: rss, limit: limit) + "; restarted gracefully"),
                .requestShutdown(pid: pid, reason: "memory limit: RSS \(Self.megabytes(rss)) above worker.memoryMaxBytes \(Self.megabytes(limit))"), kill,
            ]
        case .shutdown:
            return [.requestShutdown(pid: pid, reason: "the supervisor is shutting down"), kill]
        case .maintenance(let task):
            return [.requestShutdown(pid: pid, reason: task.summary), kill]
        }
    }

    private mutating func exited(_ status: ExitStatus, at now: ContinuousClock.Instant) -> [Action] {
        cancel(.heartbeatCheck)
        cancel(.kill)
        if case .stopping(_, let reason) = phase {
            switch reason {
            case .shutdown:
                lastExit = Exit(status: status, reason: "stopped for the supervisor's shutdown; \(status)")
                phase = .stopped
                return [.finished]
            case .restartRequested(let requester):
                lastExit = Exit(status: status, reason: "restarted at the request of \(requester); \(status)")
                return shuttingDown ? finish() : spawn()
            case .memoryLimit(let rss, let limit):
                lastExit = Exit(status: status, reason: "memory limit: \(Self.memoryLimitText(rss: rss, limit: limit)); restarted gracefully; \(status)")
                return shuttingDown ? finish() : spawn()
            case .hung(let silence):
                return failure(Exit(status: status, reason: "hung: no heartbeat for \(Self.seconds(silence)); \(status) after SIGTERM"), at: now)
            case .maintenance(let task):
                lastExit = Exit(status: status, reason: "stopped for \(task.summary); \(status)")
                if shuttingDown { return finish() }
                phase = .maintenance(task)
                return [.performMaintenance(task)]
            }
        }
        if shuttingDown {
            lastExit = Exit(status: status, reason: status.description)
            return finish()
        }
        if status == .exited(code: WorkerExitCode.fatalConfiguration) {
            let message = fatalMessage ?? "the worker reported a fatal configuration error (exit code \(WorkerExitCode.fatalConfiguration)); see bot.log"
            lastExit = Exit(status: status, reason: "fatal configuration error: \(message)")
            phase = .failed(message: message)
            return [.alert(.critical, "worker stopped for good, it will not be restarted until the configuration is fixed: \(message). Fix it, then run `bot-supervisor restart-worker`.")]
        }
        return failure(Exit(status: status, reason: status.description), at: now)
    }

    /// Two heartbeats in a row above `memoryMaxBytes` restart the worker gracefully, once: the
    /// count starts again with the next worker's own heartbeats.
    private mutating func checkMemory(_ rssBytes: Int64?) -> [Action] {
        guard let limit = settings.memoryMaxBytes, let rssBytes, rssBytes > limit else {
            heartbeatsAboveMemoryLimit = 0
            return []
        }
        switch phase {
        case .starting, .running: break
        default: return []
        }
        heartbeatsAboveMemoryLimit += 1
        guard heartbeatsAboveMemoryLimit >= 2 else { return [] }
        return stop(.memoryLimit(rssBytes: rssBytes, limitBytes: limit))
    }

    static func memoryLimitText(rss: Int64, limit: Int64) -> String {
        "worker RSS \(megabytes(rss)) above worker.memoryMaxBytes \(megabytes(limit)) in two heartbeats in a row"
    }

    /// Bytes as decimal megabytes with one decimal: `52.4 MB`.
    static func megabytes(_ bytes: Int64) -> String {
        let tenths = (bytes + 50_000) / 100_000
        return "\(tenths / 10).\(tenths % 10) MB"
    }

    private mutating func failure(_ exit: Exit, at now: ContinuousClock.Instant) -> [Action] {
        lastExit = exit
        if shuttingDown { return finish() }
        // One alert when the failures first exceed the threshold, not one per further failure.
        let wasLooping = policy.isCrashLoop
        let decision = policy.recordFailure(at: now)
        var actions: [Action] = []
        if decision.isCrashLoop, !wasLooping {
            actions.append(.alert(.critical, "worker is crash-looping: \(policy.recentFailures.count) failures in 10 minutes; last: \(exit.reason); restarting with backoff (now \(Self.seconds(decision.delay)))"))
        }
        inCrashLoop = decision.isCrashLoop
        if decision.delay == .zero {
            return actions + spawn()
        }
        phase = .waiting(until: now + decision.delay)
        return actions + [startTimer(.restart, after: decision.delay)]
    }

    private mutating func spawn() -> [Action] {
        cancel(.restart)
        if spawnedBefore { restarts += 1 }
        spawnedBefore = true
        phase = .idle
        return [.spawn]
    }

    private mutating func finish() -> [Action] {
        phase = .stopped
        cancel(.restart)
        return [.finished]
    }

    private mutating func startTimer(_ timer: Timer, after delay: Duration) -> Action {
        let generation = (generations[timer] ?? 0) + 1
        generations[timer] = generation
        return .startTimer(timer, generation: generation, after: delay)
    }

    private mutating func cancel(_ timer: Timer) {
        generations[timer] = (generations[timer] ?? 0) + 1
    }

    static func seconds(_ duration: Duration) -> String {
        let ms = duration.milliseconds
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms / 1000).\(ms % 1000 / 100) s"
    }
}
