import ArgumentParser
import FoundationEssentials
import Glibc
import IPC

@main
struct BotSupervisor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bot-supervisor",
        abstract: "Runs the Discord bot worker safely: restarts, status, health, backups, deploys.",
        version: BotVersion.current,
        subcommands: [
            RunCommand.self, StatusCommand.self, BackupCommand.self, BackupsCommand.self, VerifyCommand.self,
            RestoreCommand.self, RestartWorkerCommand.self, HealthCommand.self, DeployCommand.self, RollbackCommand.self,
            ReplicaKeyCommand.self, DrillCommand.self, DashboardURLCommand.self, LogsCommand.self,
        ],
        defaultSubcommand: RunCommand.self
    )

    /// docs/contract.md exit statuses: 0 done, 1 failed, 2 bad usage or config, 3 supervisor unreachable.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let error as ExitCode {
            Glibc.exit(error.rawValue)
        } catch let error as ConfigError {
            StandardError.write("bot-supervisor: \(error)\n")
            Glibc.exit(2)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)
            }
            StandardError.write(fullMessage(for: error) + "\n")
            Glibc.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}
