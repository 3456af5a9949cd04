import ArgumentParser
import CSupport
import FoundationEssentials
import Glibc
import IPC
import Logging
import NIOPosix
import ServiceLifecycle

/// `bot-worker run`: the bot itself, reporting to the supervisor that started it.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the bot (the default). Started by bot-supervisor, which tells it where to report."
    )

    @Option(name: .long, help: "The supervisor's worker socket (default: $\(WorkerProtocol.socketEnvironmentKey)).")
    var supervisorSocket: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        LoggingSystem.bootstrap { label in StderrLogHandler(system: label) }
        let logger = Logger(label: "bot")

        // Never outlive the supervisor: the kernel kills us when it dies. If it died before this
        // line ran, our parent is already someone else.
        if let expected = environment[WorkerProtocol.supervisorPIDEnvironmentKey].flatMap(Int32.init) {
            _ = csupport_set_parent_death_signal(SIGKILL)
            guard getppid() == expected else {
                logger.error("the supervisor that started this worker is gone; exiting")
                throw ExitCode(1)
            }
        }
        guard let socketPath = supervisorSocket ?? environment[WorkerProtocol.socketEnvironmentKey] else {
            StandardError.write("bot-worker is started by bot-supervisor, which tells it where to report; run `bot-supervisor run` instead.\n")
            throw ExitCode(2)
        }
        // Test-only faults, read once here and handed down; an unknown one is refused below, once
        // the supervisor can be told why (a restart would not fix it).
        let faults = Result { () throws(WorkerFaults.Unknown) in try WorkerFaults(value: environment[WorkerFaults.environmentKey]) }

        let connection: LineConnection
        do {
            connection = try await UnixLineSocket.connect(path: socketPath, group: MultiThreadedEventLoopGroup.singleton, readTimeout: nil)
        } catch {
            logger.error("cannot reach the supervisor", metadata: ["path": "\(socketPath)", "error": "\(error)"])
            throw ExitCode(1)
        }
        let socket = connection.channel.channel
        try await connection.channel.executeThenClose { inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            let link = SupervisorLink(outbound: outbound, logger: logger)
            let welcome: SupervisorMessage.Welcome
            do {
                welcome = try await link.greet(&frames, logSystems: FeatureCatalog.logSystems())
            } catch let refused as SupervisorLink.Refused {
                logger.critical("the supervisor cannot be worked with; exiting", metadata: ["error": "\(refused.description)"])
                StandardError.write("bot-worker: \(refused.description)\n")
                try? await link.send(.fatal(message: refused.description))
                throw ExitCode(WorkerExitCode.fatalConfiguration)
            }
            let workerFaults: WorkerFaults
            switch faults {
            case .success(let parsed): workerFaults = parsed
            case .failure(let unknown):
                logger.critical("unknown fault injection; exiting", metadata: ["error": "\(unknown.description)"])
                try? await link.send(.fatal(message: unknown.description))
                throw ExitCode(WorkerExitCode.fatalConfiguration)
            }
            let core = BotCore(
                link: link, databasePath: welcome.databasePath, discord: welcome.discord, journal: welcome.journal,
                faults: workerFaults, logger: logger, databaseLogger: Logger(label: "database")
            )
            var members: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: core),
                .init(service: HeartbeatService(interval: .milliseconds(welcome.heartbeatIntervalMs), core: core, link: link)),
                .init(service: MappedFilePages.Tidy()),
            ]
            if workerFaults.fault == .crashOnSIGUSR1 {
                members.append(.init(service: SignalFaultService()))
            }
            var configuration = ServiceGroupConfiguration(services: members, logger: logger)
            configuration.gracefulShutdownSignals = [.sigterm, .sigint]
            let services = ServiceGroup(configuration: configuration)
            try await withThrowingTaskGroup { group in
                group.addTask {
                    defer {
                        // Stopped by a signal or an error: closing the connection also ends the read
                        // below (what was written before, a `fatal` message say, still goes out first).
                        outbound.finish()
                        socket.close(promise: nil)
                    }
                    do {
                        try await services.run()
                    } catch let exit as WorkerExit {
                        logger.error("worker stopping", metadata: ["reason": "\(exit.description)"])
                        throw ExitCode(exit.code)
                    }
                }
                // When the supervisor says shut down, or goes away, the whole worker stops.
                try await link.waitForShutdown(&frames)
                await services.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        logger.info("worker stopped")
    }
}
