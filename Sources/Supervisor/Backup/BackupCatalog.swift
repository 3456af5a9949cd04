import BotData
import FoundationEssentials
import IPC

/// The backups on disk: every `<id>.json` manifest with its `<id>.sqlite`, in every location.
struct BackupCatalog: Sendable {
    struct Copy: Sendable, Equatable {
        var manifest: BackupManifest
        var location: String
        var file: String
    }

    /// One backup, whatever the number of locations holding a copy of it.
    struct Summary: Codable, Sendable, Equatable {
        var id: String
        var createdAt: String
        var reason: String
        var sizeBytes: Int
        var schemaVersion: String
        /// Every copy was verified when it was written.
        var verified: Bool
        var locations: [String]
    }

    var copies: [Copy]

    static let temporaryPrefix = ".tmp-"

    /// Reads the manifests of `locations`; a missing or unreadable location holds nothing.
    static func scan(_ locations: [String]) -> BackupCatalog {
        var copies: [Copy] = []
        for location in locations {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: location) else { continue }
            for name in names where name.hasSuffix(".json") && !name.hasPrefix(temporaryPrefix) {
                let id = String(name.dropLast(5))
                let file = location + "/" + id + ".sqlite"
                guard let data = FileManager.default.contents(atPath: location + "/" + name),
                      let manifest = try? JSONLine.decode(BackupManifest.self, from: data),
                      manifest.id == id,
                      FileManager.default.fileExists(atPath: file)
                else { continue }
                copies.append(Copy(manifest: manifest, location: location, file: file))
            }
        }
        return BackupCatalog(copies: copies.sorted { $0.manifest.id > $1.manifest.id })
    }

    /// Newest first.
    var summaries: [Summary] {
        var byID: [String: Summary] = [:]
        for copy in copies {
            let m = copy.manifest
            var summary = byID[m.id] ?? Summary(
                id: m.id, createdAt: m.createdAt, reason: m.reason.rawValue, sizeBytes: m.sizeBytes,
                schemaVersion: m.schemaVersion, verified: true, locations: []
            )
            summary.verified = summary.verified && m.isVerified
            summary.locations.append(copy.location)
            byID[m.id] = summary
        }
        return byID.values.sorted { $0.id > $1.id }
    }

    /// Copies of `id` (or of every verified backup, newest first, when nil), to try in order.
    func candidates(for id: String?) -> [Copy] {
        if let id { return copies.filter { $0.manifest.id == id } }
        return copies.filter { $0.manifest.isVerified }
    }

    /// The copies a restore to `target` tries, best first.
    func candidates(for target: RestoreEngine.Target) -> [Copy] {
        switch target {
        case .latest: return candidates(for: nil)
        case .backup(let id, _): return candidates(for: id)
        case .pointInTime(let date):
            let limit = Timestamp.milliseconds(date)
            return candidates(for: nil).filter { copy in
                guard let position = copy.manifest.journal else {
                    return Timestamp.date(copy.manifest.createdAt).map { $0 <= date } ?? false
                }
                // Its last transaction and the start of its timeline (a migration, a restore)
                // are both from before the moment.
                let started = JournalState.start(of: position.timeline).map { Timestamp.milliseconds($0) } ?? 0
                return position.committedAtMs <= limit && started <= limit
            }
        }
    }

    /// Removes leftovers of backups that never finished (a crash mid-backup): no file that looks
    /// like a backup is ever left half-written.
    static func removeLeftovers(in locations: [String]) -> [String] {
        var removed: [String] = []
        for location in locations {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: location) else { continue }
            for name in names where name.hasPrefix(temporaryPrefix) {
                if (try? FileManager.default.removeItem(atPath: location + "/" + name)) != nil {
                    removed.append(location + "/" + name)
                }
            }
        }
        return removed
    }
}

/// Which backups to delete: a pure decision, tested with an injected clock.
///
/// A backup older than `keepDays` is deleted only when a newer verified backup exists in the same
/// location, and the newest verified backup of a location is never deleted, whatever its age.
/// Pre-migration and pre-deploy backups follow the same rule, so they live at least as long.
struct RetentionPolicy: Sendable {
    var keepDays: Int

    func expired(_ copies: [BackupCatalog.Copy], now: Date) -> [BackupCatalog.Copy] {
        let cutoff = now.addingTimeInterval(-Double(keepDays) * 86_400)
        var doomed: [BackupCatalog.Copy] = []
        let byLocation = Dictionary(grouping: copies, by: \.location)
        for (_, copies) in byLocation {
            let verified = copies.filter { $0.manifest.isVerified }
                .compactMap { copy in Timestamp.date(copy.manifest.createdAt).map { (copy, $0) } }
            guard let newestVerified = verified.max(by: { $0.1 < $1.1 }) else { continue }
            for copy in copies where copy.manifest.id != newestVerified.0.manifest.id {
                guard let created = Timestamp.date(copy.manifest.createdAt), created < cutoff else { continue }
                if verified.contains(where: { $0.1 > created }) {
                    doomed.append(copy)
                }
            }
        }
        return doomed.sorted { $0.file < $1.file }
    }
}
