import ArgumentParser
import FoundationEssentials
import IPC

/// `bot-supervisor replica-key generate [--out FILE]`: a new key for the off-host replicas.
struct ReplicaKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica-key",
        abstract: "Manage the encryption key of the off-host replicas.",
        subcommands: [Generate.self]
    )

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate",
            abstract: "Write a new replica encryption key (mode 0600) to replicas.keyFile or FILE; an existing file is never overwritten."
        )

        @Option(name: .long, help: "Where to write the key (default: replicas.keyFile of the config).")
        var out: String?

        @Option(name: .long, help: "The supervisor's config file, to find replicas.keyFile.")
        var config: String?

        func run() async throws {
            let file: String
            if let out {
                file = ConfigLoader.absolute(out, in: FileManager.default.currentDirectoryPath)
            } else {
                file = try await ConfigLoader.load(file: config).config.replicas.keyFile
            }
            try ReplicaKey.generate(to: file)
            print("wrote a new replica key to \(file) (mode 0600)")
            print("keep a copy of it off this server: without it the replicas cannot be read, by anyone")
        }
    }
}
