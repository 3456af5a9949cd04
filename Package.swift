// swift-tools-version: 6.1
import PackageDescription

/// Release executables on Linux are linked by lld with packed relative relocations (DT_RELR,
/// glibc 2.36 and later: Debian 12): the 140,000 relocations of a Swift binary take 30 KB instead
/// of 3.3 MB that the loader reads at each start and that stay mapped. And they export no symbols
/// (linker/no-exports.map). Together about 5 MB less of each process's RSS (benchmarks/footprint).
let releaseLinking: [LinkerSetting] = [
    .unsafeFlags(
        ["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
         "-Xlinker", "--version-script=\(Context.packageDirectory)/linker/no-exports.map"],
        .when(platforms: [.linux], configuration: .release)
    ),
]

let package = Package(
    name: "discord-bot-supervisor",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "bot-supervisor", targets: ["Supervisor"]),
        .executable(name: "bot-worker", targets: ["BotWorker"]),
        .executable(name: "discord-sandbox", targets: ["DiscordSandbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // libsystemd, for sd_notify(3). Debian: libsystemd-dev.
        .systemLibrary(
            name: "CSystemd",
            path: "Sources/CSystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // Small C shims for what Swift cannot call directly (variadic prctl, struct ucred).
        .target(name: "CSupport", path: "Sources/CSupport"),
        // SQLite's session extension (changesets), for the change journal: libsqlite3 has it, the
        // header declares it only with two macros this target defines for itself.
        .target(
            name: "CSQLiteSession",
            path: "Sources/CSQLiteSession",
            linkerSettings: [.linkedLibrary("sqlite3")]
        ),
        // A pass-through SQLite VFS that reports the bytes a backup's copy has settled, so the
        // copy can be hashed while SQLite writes it.
        .target(
            name: "CSQLiteCopyWatch",
            path: "Sources/CSQLiteCopyWatch",
            linkerSettings: [.linkedLibrary("sqlite3")]
        ),
        // The wire protocol shared by the supervisor, the worker and operator clients.
        .target(
            name: "IPC",
            dependencies: [
                "CSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The database's identity, the read-only checks both executables make on it, and the
        // change journal's format (the worker writes it, the supervisor replays it).
        .target(
            name: "BotData",
            dependencies: [
                "IPC",
                "CSQLiteSession",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "Supervisor",
            dependencies: [
                "IPC",
                "BotData",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                "CSupport",
                "CSQLiteCopyWatch",
                "CSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            linkerSettings: releaseLinking
        ),
        .executableTarget(
            name: "BotWorker",
            dependencies: [
                "IPC",
                "BotData",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                "CSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            linkerSettings: releaseLinking
        ),
        // The local Discord: Gateway and REST v10 on loopback, with a simulated guild. The worker
        // starts it in `sandbox` mode; tests and benchmarks drive it through its /sandbox API.
        .executableTarget(
            name: "DiscordSandbox",
            dependencies: [
                "IPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            linkerSettings: releaseLinking
        ),
        // What the test targets share (test targets cannot depend on each other): the fuzzer,
        // temporary directories, deadline waits.
        .target(
            name: "TestSupport",
            dependencies: ["IPC"],
            path: "Tests/TestSupport"
        ),
        // Unit tests: fast, process-free, run in parallel.
        .testTarget(
            name: "IPCTests",
            dependencies: [
                "IPC", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SupervisorTests",
            dependencies: [
                "Supervisor", "IPC", "BotData", "TestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(
            name: "BotWorkerTests",
            dependencies: [
                "BotWorker", "IPC", "BotData", "TestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "DiscordSandboxTests",
            dependencies: [
                "DiscordSandbox", "IPC",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        // Integration tests: the real binaries, real servers on loopback and waits on real time.
        // `make test` runs them after the unit tests, one at a time.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Supervisor", "BotWorker", "IPC", "BotData", "TestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
    ]
)
