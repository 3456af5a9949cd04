import FoundationEssentials
import IPC

/// The supervisor's configuration: docs/contract.md, "Configuration". Paths are absolute once loaded.
struct SupervisorConfig: Sendable, Equatable {
    var dataDir: String
    var runtimeDir: String
    var statusSocket: String
    /// How long a status-socket client may take to send a complete request line.
    var controlReadTimeout: Duration
    var worker: Worker
    var logs: Logs
    var health: Health
    var backup: Backup
    var alertsWebhookURL: Secret?
    /// A dead man's switch (`alerts.heartbeatURL`): pinged after every health run, `<url>/fail`
    /// when a check is critical. A secret: the URL is the credential.
    var alertsHeartbeatURL: Secret?
    var metricsListen: String?
    /// `dashboard.listen`: `host:port` of the web dashboard; nil when off (`""`).
    var dashboardListen: String? = "127.0.0.1:8080"
    var discord: Discord
    var deploy: Deploy = Deploy()
    var journal: Journal = Journal()
    var replicas: Replicas = Replicas()

    /// Off-host replicas (`replicas.*`): every verified snapshot and the journal, encrypted,
    /// shipped with rclone. See `Replicator`.
    struct Replicas: Sendable, Equatable {
        struct Target: Sendable, Equatable {
            /// `[a-z0-9-]+`, unique: names the state file and the status entry.
            var name: String
            /// `<rclone remote>:<path>`.
            var remote: String
        }

        var targets: [Target] = []
        var rcloneConfig: String?
        /// Empty until loaded: then `<dataDir>/replica.key` unless set.
        var keyFile = ""
        var maxLagSeconds: Double = 5
        var drillIntervalHours: Double = 24
    }

    /// The change journal (`journal.*`): every committed write of the worker, in every backup
    /// location, replayed after a restore.
    struct Journal: Sendable, Equatable {
        var enabled = true
        var segmentMaxBytes = 64 << 20
    }

    /// What the worker is told of the journal in its welcome.
    var journalSettings: JournalSettings {
        JournalSettings(enabled: journal.enabled, locations: backup.locations, segmentMaxBytes: journal.segmentMaxBytes)
    }

    struct Deploy: Sendable, Equatable {
        /// Holds `releases/<version>/`, `current` and `previous`; nil when the supervisor does
        /// not run from an installed release (then `deploy` and `rollback` are refused).
        var root: String?
        /// A new release must be ready within this long, then stay healthy for `probation`.
        var readyTimeout: Duration = .seconds(60)
        var probation: Duration = .seconds(120)
        /// How long the staging rehearsal's sandbox traffic lasts.
        var rehearsal: Duration = .seconds(60)
    }

    struct Worker: Sendable, Equatable {
        var executable: String
        var heartbeatInterval: Duration
        var heartbeatTimeout: Duration
        var stopGrace: Duration
        /// The delay before the second restart in a row; it doubles per failure up to `restartDelayMax`.
        var restartDelay: Duration
        var restartDelayMax: Duration
        /// `worker.memoryMaxBytes`: above it in two heartbeats in a row, a graceful restart.
        var memoryMaxBytes: Int64? = nil
    }

    struct Logs: Sendable, Equatable {
        var dir: String
        var keepDays: Int
        /// `logs.maxBytes`: every log file together stays under this.
        var maxBytes: Int64 = 1 << 30
    }

    struct Health: Sendable, Equatable {
        var interval: Duration
    }

    struct Backup: Sendable, Equatable {
        var locations: [String]
        var dailyAt: String
        var keepDays: Int
    }

    struct Discord: Sendable, Equatable {
        var token: Secret?
        var mode: String
        var gatewayURL: String?
        var apiBaseURL: String?
        var guildIDs: [String]
        var sandboxMembers: Int = 40
        var sandboxActivityPerMinute: Int = 30
        var sandboxGuilds: Int = 1
        /// nil: `auto`.
        var shards: Int? = nil

        /// What the worker is told in its welcome.
        var settings: DiscordSettings {
            DiscordSettings(
                mode: mode == "discord" ? .discord : .sandbox, token: token, gatewayURL: gatewayURL, apiBaseURL: apiBaseURL,
                guildIDs: guildIDs, sandboxMembers: sandboxMembers, sandboxActivityPerMinute: sandboxActivityPerMinute,
                shards: shards, sandboxGuilds: sandboxGuilds
            )
        }
    }

    /// The dashboard's token file: 0600, made at first start (`DashboardAccess`).
    var dashboardTokenFile: String { dataDir + "/dashboard.token" }

    /// The worker's socket: internal, not part of the contract.
    var workerSocket: String { runtimeDir + "/worker.sock" }
    var lockFile: String { runtimeDir + "/supervisor.lock" }
}
