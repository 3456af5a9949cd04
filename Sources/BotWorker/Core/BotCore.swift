import FoundationEssentials
import Glibc
import IPC
import Logging
import ServiceLifecycle

/// The bot's main work. The Discord connection, the database and the features plug in here in
/// later versions; for now it starts, reports ready, and answers health reports until shutdown.
actor BotCore: Service {
    struct HealthReport: Sendable {
        var healthy: Bool
        var detail: String?
        var rssBytes: Int?
    }

    private let link: SupervisorLink
    private let logger: Logger

    init(link: SupervisorLink, logger: Logger) {
        self.link = link
        self.logger = logger
    }

    func run() async throws {
        try await link.send(.ready)
        logger.info("worker ready", metadata: ["pid": "\(getpid())"])
        try? await gracefulShutdown()
    }

    func healthReport() -> HealthReport {
        HealthReport(healthy: true, detail: nil, rssBytes: Self.residentBytes())
    }

    private static func residentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
