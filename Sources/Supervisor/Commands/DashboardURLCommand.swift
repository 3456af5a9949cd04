import ArgumentParser
import FoundationEssentials
import IPC

struct DashboardURLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard-url",
        abstract: "Print a one-time login link for the web dashboard (valid 10 minutes, for one login)."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .dashboardURL), timeoutSeconds: 10, showsProgress: false)
        try options.finish(envelope, as: DashboardLink.self) { $0.url + "\n" }
    }
}
