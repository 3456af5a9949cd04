/// The status socket: one `{"cmd":…}` request per line, one `{"ok":…}` response per line.
/// See docs/contract.md, "The status socket".
public enum ControlCommand: String, Codable, Sendable, CaseIterable {
    case status
    case health
    case backup
    case backups
    case verify
    case restore
    case restartWorker = "restart-worker"
    case deploy
    case rollback
    /// Restore every replica into a scratch dir now and compare it with the live database.
    case drill
    /// A one-time login link for the web dashboard (it grants access: not a reading command).
    case dashboardURL = "dashboard-url"
    /// An XP import (MEE6's leaderboard JSON or CSV, base64 in `content`), run by the worker in
    /// one transaction; `dryRun` only reports what it would change.
    case xpImport = "xp-import"
    /// A guild's XP as CSV (it hands out every member's XP: not a reading command).
    case xpExport = "xp-export"

    /// Reading commands are open to any peer that can connect; the others need uid 0 or the
    /// supervisor's own uid.
    public var isReadOnly: Bool {
        switch self {
        case .status, .health, .backups: true
        default: false
        }
    }
}

public struct ControlRequest: Codable, Sendable, Equatable {
    public var cmd: ControlCommand
    /// `restore`: the backup to restore; absent means the newest verified one.
    public var backup: String?
    /// `restore`: the point in time (ISO 8601) whose state to bring back.
    public var at: String?
    /// `deploy`: the release directory.
    public var release: String?
    /// `deploy`: run the staging rehearsal only, change nothing.
    public var rehearseOnly: Bool?
    /// `xp-import`, `xp-export`: the guild's id.
    public var guild: String?
    /// `xp-import`: `mee6` or `csv`.
    public var format: String?
    /// `xp-import`: report what would change, write nothing.
    public var dryRun: Bool?
    /// `xp-import`: the file, base64.
    public var content: String?

    public init(
        cmd: ControlCommand, backup: String? = nil, at: String? = nil, release: String? = nil, rehearseOnly: Bool? = nil,
        guild: String? = nil, format: String? = nil, dryRun: Bool? = nil, content: String? = nil
    ) {
        self.cmd = cmd
        self.guild = guild
        self.format = format
        self.dryRun = dryRun
        self.content = content
        self.at = at
        self.backup = backup
        self.rehearseOnly = rehearseOnly
        self.release = release
    }

    private enum CodingKeys: String, CodingKey { case cmd, backup, at, release, rehearseOnly, guild, format, dryRun, content }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let name = try container.decode(String.self, forKey: .cmd)
        guard let cmd = ControlCommand(rawValue: name) else {
            let known = ControlCommand.allCases.map(\.rawValue).joined(separator: ", ")
            throw MessageDecodingError("unknown command \"\(name)\"; known commands: \(known)")
        }
        self.cmd = cmd
        self.backup = try container.decodeIfPresent(String.self, forKey: .backup)
        self.at = try container.decodeIfPresent(String.self, forKey: .at)
        self.release = try container.decodeIfPresent(String.self, forKey: .release)
        self.rehearseOnly = try container.decodeIfPresent(Bool.self, forKey: .rehearseOnly)
        self.guild = try container.decodeIfPresent(String.self, forKey: .guild)
        self.format = try container.decodeIfPresent(String.self, forKey: .format)
        self.dryRun = try container.decodeIfPresent(Bool.self, forKey: .dryRun)
        self.content = try container.decodeIfPresent(String.self, forKey: .content)
    }
}

/// The result of a command that changes something: what was done, in words.
public struct ActionResult: Codable, Sendable, Equatable {
    public var message: String
    public var workerPid: Int32?
    public init(message: String, workerPid: Int32? = nil) {
        self.message = message
        self.workerPid = workerPid
    }
}

/// `{"ok":true,"result":…}` or `{"ok":false,"error":{"code":…,"message":…}}`.
public struct ControlResponse<Result: Codable & Sendable>: Codable, Sendable {
    public var ok: Bool
    public var result: Result?
    public var error: ErrorBody?

    public init(ok: Bool, result: Result?, error: ErrorBody?) {
        self.ok = ok
        self.result = result
        self.error = error
    }

    public static func success(_ result: Result) -> Self { .init(ok: true, result: result, error: nil) }
    public static func failure(_ error: ErrorBody) -> Self { .init(ok: false, result: nil, error: error) }

    private enum CodingKeys: String, CodingKey { case ok, result, error }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ok, forKey: .ok)
        // A failure may carry a result too (the report of a verification that found problems).
        if ok || result != nil { try container.encode(result, forKey: .result) }
        if !ok { try container.encode(error, forKey: .error) }
    }
}

/// A response whose result the caller does not need to decode.
public struct Ignored: Codable, Sendable {
    public init(from decoder: any Decoder) throws {}
    public func encode(to encoder: any Encoder) throws {}
}
