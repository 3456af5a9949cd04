import ArgumentParser
import IPC

@main
struct BotWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bot-worker",
        abstract: "The Discord bot. Normally started only by bot-supervisor, which it reports to.",
        version: BotVersion.current,
        subcommands: [RunCommand.self, MigrateCommand.self, XPCommand.self],
        defaultSubcommand: RunCommand.self
    )
}
