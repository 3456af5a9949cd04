import FoundationEssentials
import Glibc
import IPC
import Logging
import ServiceLifecycle
import Synchronization

/// Keeps one `bot-worker` running: the supervision loop.
///
/// Everything that happens to the worker (spawned, connected, ready, heartbeat, exited, a timer,
/// an operator's restart, shutdown) arrives here as one event on one stream; the loop hands it to
/// `WorkerStateMachine` and performs the actions it returns. Only this loop mutates the machine.
final class WorkerSupervisor: Service, Sendable {
    enum Input: Sendable {
        case event(WorkerStateMachine.Event)
        /// The watchdog asks whether the loop still turns; the loop records the probe's number.
        case probe(Int)
    }

    private let config: SupervisorConfig
    private let link: WorkerLink
    private let store: StatusStore
    private let keeper: DataKeeper
    private let notifier: SystemdNotifier
    private let logger: Logger
    private let output: WorkerOutput
    private let inputs: AsyncStream<Input>
    private let continuation: AsyncStream<Input>.Continuation
    private let answeredProbe = Atomic<Int>(0)
    /// The worker's environment: the supervisor's own is fixed once it runs, so it is computed
    /// here rather than at each (re)start.
    private let workerEnvironment: [String: String]
    /// The thread that reaped a worker spawns its successor when the restart is immediate.
    private let waiterThreads = ChildProcess.WaiterThreads()

    init(config: SupervisorConfig, link: WorkerLink, store: StatusStore, keeper: DataKeeper, notifier: SystemdNotifier, logger: Logger, output: WorkerOutput) {
        self.keeper = keeper
        self.config = config
        self.link = link
        self.store = store
        self.notifier = notifier
        self.logger = logger
        self.output = output
        (inputs, continuation) = AsyncStream.makeStream(of: Input.self)
        workerEnvironment = WorkerProcess.environment(extra: [
            WorkerProtocol.socketEnvironmentKey: config.workerSocket,
            WorkerProtocol.supervisorPIDEnvironmentKey: String(getpid()),
            // A crash prints the Swift runtime's backtrace on stderr, which lands in errors.log.
            // Symbol names only (`fast`): full symbolication of a large binary takes tens of
            // seconds, during which the crashed worker is neither alive nor gone.
            "SWIFT_BACKTRACE": "enable=yes,interactive=no,color=no,output-to=stderr,symbolicate=fast",
        ])
    }

    /// Feeds an event to the loop; safe from any thread.
    func send(_ event: WorkerStateMachine.Event) {
        continuation.yield(.event(event))
    }

    /// Asks the loop to answer probe `number`; `answered` tells later whether it did.
    func probe(_ number: Int) { continuation.yield(.probe(number)) }
    var answered: Int { answeredProbe.load(ordering: .acquiring) }

    func run() async throws {
        var machine = WorkerStateMachine(
            settings: .init(heartbeatTimeout: config.worker.heartbeatTimeout, stopGrace: config.worker.stopGrace, memoryMaxBytes: config.worker.memoryMaxBytes),
            policy: RestartPolicy(initialDelay: config.worker.restartDelay, maximumDelay: config.worker.restartDelayMax)
        )
        var startedAt: Date?
        var exitAt: Date?
        await withDiscardingTaskGroup { children in
            await withGracefulShutdownHandler {
                var finished = false
                // The database is checked (and restored if need be) before the first start.
                var pending: [WorkerStateMachine.Event] = [.maintenanceRequested(.startupCheck)]
                var inputs = self.inputs.makeAsyncIterator()
                while !finished {
                    if pending.isEmpty {
                        switch await inputs.next() {
                        case .event(let event): pending.append(event)
                        case .probe(let number):
                            answeredProbe.store(number, ordering: .releasing)
                            continue
                        case nil: return
                        }
                    }
                    var alerts: [(AlertSeverity, String)] = []
                    while !pending.isEmpty {
                        let event = pending.removeFirst()
                        let expected = machine.state == .stopping
                        switch event {
                        case .exited, .spawnFailed: exitAt = Date()
                        case .shutdownRequested: await store.setSupervisorState("stopping")
                        default: break
                        }
                        var actions = machine.handle(event, at: .now)
                        // A restart's spawn goes first: the successor is exec'd before the death is
                        // logged and its crash report set going (issue 21), and the lines still read
                        // "exited", then "started". `.spawn` comes alone or after alerts, which
                        // wait for the publication below anyway.
                        var spawned: Result<ChildProcess, WorkerProcess.SpawnError>?
                        if let index = actions.firstIndex(of: .spawn) {
                            actions.remove(at: index)
                            do throws(WorkerProcess.SpawnError) {
                                spawned = .success(try await self.spawnWorker())
                            } catch {
                                spawned = .failure(error)
                            }
                        }
                        self.trace(event, expected: expected, children: &children)
                        switch spawned {
                        case .success(let worker):
                            self.started(worker)
                            startedAt = Date()
                            pending.append(.spawned(pid: worker.pid))
                        case .failure(let error):
                            pending.append(.spawnFailed(message: "\(error)"))
                        case nil:
                            break
                        }
                        for action in actions {
                            switch action {
                            case .spawn:
                                break  // performed above
                            case .requestShutdown(let pid, let reason):
                                if await !link.send(.shutdown(reason: reason), to: pid) {
                                    ChildProcess.signalGroup(pid, SIGTERM)
                                }
                            case .signal(let pid, let signal):
                                logger.info("signalling the worker", metadata: [LogKey.pid: "\(pid)", "signal": "\(ExitStatus.signalName(signal))"])
                                ChildProcess.signalGroup(pid, signal)
                            case .startTimer(let timer, let generation, let delay):
                                let continuation = self.continuation
                                children.addTask {
                                    guard (try? await Task.sleep(for: delay)) != nil else { return }
                                    continuation.yield(.event(.timerFired(timer, generation: generation)))
                                }
                            case .alert(let severity, let message):
                                alerts.append((severity, message))
                            case .firstReady:
                                notifier.ready(status: "worker ready")
                            case .finished:
                                finished = true
                            case .performMaintenance(let task):
                                children.addTask { await self.maintain(task) }
                            }
                        }
                    }
                    // The new state first, then its alerts: the summary line never pairs an alert
                    // with the state before it.
                    await store.publish(worker: Self.publication(machine, startedAt: startedAt, exitAt: exitAt))
                    for (severity, message) in alerts { await store.raise(severity, message) }
                }
            } onGracefulShutdown: {
                self.notifier.stopping(status: "stopping: asking the worker to shut down")
                self.continuation.yield(.event(.shutdownRequested))
            }
            children.cancelAll()
        }
        waiterThreads.dismissIdle()  // no worker will be spawned again
    }

    /// Runs a maintenance task while the loop goes on turning; during the start-up check it keeps
    /// extending systemd's start timeout, since a restore of a large database takes a while.
    private func maintain(_ task: MaintenanceTask) async {
        logger.info("maintenance", metadata: [LogKey.reason: "\(task.summary)"])
        let outcome = await withTaskGroup(of: MaintenanceOutcome?.self) { group in
            group.addTask { await self.keeper.perform(task) }
            group.addTask {
                while !Task.isCancelled {
                    self.notifier.extendTimeout(.seconds(30))
                    guard (try? await Task.sleep(for: .seconds(10))) != nil else { break }
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = await group.next() {
                if let result { return result }
            }
            return MaintenanceOutcome(startWorker: false, succeeded: false, message: "maintenance was cancelled")
        }
        logger.log(level: outcome.succeeded ? .info : .error, "maintenance finished", metadata: [LogKey.outcome: "\(outcome.message)"])
        continuation.yield(.event(.maintenanceFinished(outcome)))
    }

    /// Spawns the worker and wires its exit to the loop: the part of a restart between the
    /// decision and the exec, kept to that (the environment is computed once, in `init`). Its
    /// output is read from `started`.
    private func spawnWorker() async throws(WorkerProcess.SpawnError) -> ChildProcess {
        let worker = try await WorkerProcess.spawn(executable: config.worker.executable, environment: workerEnvironment, reusing: waiterThreads)
        let pid = worker.pid
        let continuation = self.continuation
        worker.whenExited { status in
            continuation.yield(.event(.exited(pid: pid, status: status)))
        }
        return worker
    }

    /// Logs a spawned worker and starts copying its output into the log. Its output waits in the
    /// pipes meanwhile: nothing is lost.
    private func started(_ worker: ChildProcess) {
        let pid = worker.pid
        logger.info("worker started", metadata: [LogKey.pid: "\(pid)", LogKey.path: "\(config.worker.executable)"])
        let output = self.output
        for (fd, stream) in [(worker.stdout, "stdout"), (worker.stderr, "stderr")] {
            guard let fd else { continue }
            let copied = OutputReader.lines(from: fd, onLine: { line in
                output.accept(line, stream: stream, pid: pid)
            }, onEnd: {
                if stream == "stderr" { output.recent.ended(pid: pid) }
            })
            if !copied { logger.warning("the worker's output is lost: no thread to copy it", metadata: [LogKey.stream: "\(stream)"]) }
        }
    }

    /// Logs an event worth a line; a crash's report (its last output and backtrace into
    /// errors.log, which waits for the end of its output) becomes a child of the loop's group.
    private func trace(_ event: WorkerStateMachine.Event, expected: Bool, children: inout DiscardingTaskGroup) {
        switch event {
        case .heartbeat, .timerFired(.heartbeatCheck, _), .connected: return
        case .exited(let pid, let status):
            logger.log(level: expected ? .info : .error, "worker exited", metadata: [LogKey.pid: "\(pid)", LogKey.reason: "\(status)"])
            if !expected, status != .exited(code: 0), status != .exited(code: WorkerExitCode.fatalConfiguration) {
                let output = self.output
                children.addTask { await output.reportCrash(pid: pid, reason: "\(status)") }
            } else {
                output.recent.take(pid: pid)
            }
        case .restartRequested(let requester):
            logger.info("worker restart requested", metadata: ["by": "\(requester)"])
        case .spawnFailed(let message):
            logger.error("worker could not be started", metadata: [LogKey.error: "\(message)"])
        case .fatalReported(let pid, let message):
            logger.critical("worker reported a fatal configuration error", metadata: [LogKey.pid: "\(pid)", LogKey.error: "\(message)"])
        default: return
        }
    }

    private static func publication(_ machine: WorkerStateMachine, startedAt: Date?, exitAt: Date?) -> StatusStore.WorkerPublication {
        var nextStartAt: Date?
        if case .waiting(let until) = machine.phase {
            let remaining = until - ContinuousClock.now
            nextStartAt = Date().addingTimeInterval(Double(StatusStore.milliseconds(remaining)) / 1000)
        }
        return .init(
            pid: machine.pid,
            state: machine.state,
            restarts: machine.restarts,
            startedAt: machine.pid == nil ? nil : startedAt,
            lastHeartbeat: machine.lastHeartbeat,
            lastExit: machine.lastExit.map { exit in
                LastExit(code: exit.status?.code, signal: exit.status?.signal, reason: exit.reason, at: Timestamp.string(exitAt ?? Date()))
            },
            lastStartup: machine.lastStartup,
            nextStartAt: nextStartAt,
            detail: machine.detail
        )
    }
}
