import BotData
import FoundationEssentials
import Glibc

/// What a replica has received, kept in `<dataDir>/replicas/<name>.json` so that a restart or an
/// outage resumes where shipping stopped, and so that retention keeps what it still lacks.
struct ReplicaState: Codable, Sendable, Equatable {
    /// Ids of the snapshots shipped whole (their `.sqlite.enc` and then their `.json.enc`).
    var snapshots: [String] = []
    /// Journal bytes shipped per segment: `"<timeline>/<segment file name>"` → byte count.
    var segments: [String: Int] = [:]
    var lastSequence: Int64?
    var lastShippedAt: String?
    /// Encrypted bytes sent so far.
    var bytes: Int64 = 0

    static func directory(dataDir: String) -> String { dataDir + "/replicas" }
    static func path(dataDir: String, name: String) -> String { directory(dataDir: dataDir) + "/" + name + ".json" }

    /// The segment's key in `segments`: its timeline folder and file name.
    static func segmentKey(_ path: String) -> String {
        path.split(separator: "/").suffix(2).joined(separator: "/")
    }

    /// Nil when there is no such file (nothing shipped yet) or it cannot be read.
    static func load(_ path: String) -> ReplicaState? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(ReplicaState.self, from: data)
    }

    /// Written whole and renamed into place, so that a crash leaves the old state or the new.
    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let temporary = path + ".tmp"
        try DurableFile.write(try encoder.encode(self), to: temporary)
        try DurableFile.rename(temporary, to: path)
    }
}

/// What local retention must keep because a replica does not have it yet: a verified backup
/// not shipped, a journal segment not shipped to its end. A replica with no state file yet has
/// nothing, so it protects everything.
struct ReplicaRetentionGuard: Sendable {
    var states: [ReplicaState?]

    static func load(dataDir: String, names: [String]) -> ReplicaRetentionGuard {
        ReplicaRetentionGuard(states: names.map { ReplicaState.load(ReplicaState.path(dataDir: dataDir, name: $0)) })
    }

    func protects(backup copy: BackupCatalog.Copy) -> Bool {
        copy.manifest.isVerified && states.contains { !($0?.snapshots.contains(copy.manifest.id) ?? false) }
    }

    /// A segment file, or a timeline folder (protected while one of its segments is).
    func protects(journalPath path: String) -> Bool {
        guard !states.isEmpty else { return false }
        if !path.hasSuffix(JournalLayout.fileExtension) {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            return names.contains { $0.hasSuffix(JournalLayout.fileExtension) && protects(journalPath: path + "/" + $0) }
        }
        let size = DurableFile.size(of: path) ?? 0
        let key = ReplicaState.segmentKey(path)
        return states.contains { ($0?.segments[key] ?? 0) < size }
    }
}
