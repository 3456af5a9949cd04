import BotData
import FoundationEssentials
import Glibc
import IPC

/// Fetches a database's history from replicas: the newest snapshot that fits the target and still
/// verifies, and the journal of its timeline after it, downloaded, decrypted and laid out in a
/// scratch folder as in a backup location, for `RestoreEngine` to replay.
///
/// The first source is the replica asked for. The others stand in, object by object, for what it
/// holds damaged or lacks (and bring journal entries it had not received yet); each such case is
/// in `problems`. A wrong key stops everything: every object was sealed with the one key.
struct ReplicaRecovery: Sendable {
    struct Source: Sendable {
        var name: String
        var remote: RcloneRemote
    }

    /// What a replicator recorded as shipped. A drill looks only at that: objects beyond it may
    /// still be on their way, and everything in it must be there.
    struct Shipped: Sendable {
        var snapshots: Set<String>
        var segments: [String: Int]
    }

    struct Fetched: Sendable {
        var copy: BackupCatalog.Copy
        /// The replica the snapshot came from.
        var snapshotFrom: String
        /// Objects that could not be used, holes, and what stood in for them.
        var problems: [String] = []
        /// Replicas after the first that could not be listed, and why.
        var unavailable: [String] = []
        /// Snapshots passed over, and why.
        var rejected: [String] = []
        /// Journal bytes put together per segment (`<timeline>/<segment>`).
        var segments: [String: Int] = [:]
        /// What `Shipped` says was sent and is not there: snapshots, and segments that stop short.
        var missing: [String] = []
    }

    let sources: [Source]
    let cipher: ReplicaCipher
    /// The scratch folder, laid out as a backup location; made and filled here.
    let location: String
    var shipped: Shipped?

    private var downloads: String { location + "/.download" }

    func fetch(_ target: RestoreEngine.Target, progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Fetched {
        try FileManager.default.createDirectory(atPath: downloads, withIntermediateDirectories: true)
        progress("listing \(sources.map(\.name).joined(separator: ", "))")
        var listings: [ReplicaListing?] = []
        var unavailable: [String] = []
        var missing: [String] = []
        for (index, source) in sources.enumerated() {
            do {
                var listing = ReplicaListing.parse(try await source.remote.list())
                if index == 0, let shipped {
                    missing = shipped.snapshots.subtracting(listing.snapshots).sorted().map { "snapshot \($0) was shipped and is not on the replica (deleted, or only one of its two objects left)" }
                    listing = listing.limited(to: shipped)
                }
                listings.append(listing)
            } catch {
                if index == 0 { throw error }
                unavailable.append("\(source.name): \(error)")
                listings.append(nil)
            }
        }
        var problems: [String] = []
        var rejected: [String] = []
        let ids = Set(listings.compactMap { $0 }.flatMap(\.snapshots)).sorted(by: >)
        guard !ids.isEmpty else {
            throw ReplicaError.io("replica \(sources[0].name) (\(sources[0].remote.remote)) holds no snapshot\(listings.count > 1 ? ", nor do the others" : ""): there is nothing to restore from it")
        }
        for id in ids {
            if case .backup(let wanted, _) = target, wanted != id { continue }
            let holders = listings.indices.filter { listings[$0]?.snapshots.contains(id) == true }
            guard let manifest = try await manifest(id, holders: holders, problems: &problems) else { continue }
            let copy = BackupCatalog.Copy(manifest: manifest, location: location, file: location + "/" + id + ".sqlite")
            guard !BackupCatalog(copies: [copy]).candidates(for: target).isEmpty else {
                if manifest.isVerified { continue }
                rejected.append("\(id): it was not verified when it was taken")
                continue
            }
            progress("downloading snapshot \(id) (\(StatusTable.megabytes(manifest.sizeBytes)))")
            guard let from = try await snapshot(copy, holders: holders, problems: &problems, rejected: &rejected) else { continue }
            var fetched = Fetched(copy: copy, snapshotFrom: sources[from].name, problems: problems, unavailable: unavailable, rejected: rejected, missing: missing)
            if target.replays, let position = manifest.journal {
                progress("downloading the journal after sequence \(position.sequence)")
                try await journal(after: position, listings: listings, into: &fetched)
            }
            return fetched
        }
        let why = (rejected + problems).joined(separator: "; ")
        throw ReplicaError.io("no snapshot on replica \(sources[0].name) fits\(why.isEmpty ? "" : ": " + why)")
    }

    /// Removes the scratch folder.
    func clear() {
        try? FileManager.default.removeItem(atPath: location)
    }

    // MARK: - Snapshots

    /// The manifest of `id`, from the first holder whose copy opens; nil when none does.
    private func manifest(_ id: String, holders: [Int], problems: inout [String]) async throws -> BackupManifest? {
        let object = "snapshots/" + id + ".json.enc"
        for index in holders {
            let sealed = downloads + "/" + sources[index].name + "-" + id + ".json.enc"
            defer { unlink(sealed) }
            do {
                try await sources[index].remote.download(object, to: sealed)
                let plain = try await BlockingPool.shared.run("decrypting \(object)", deadline: .seconds(60)) { [cipher] in
                    try cipher.open(Array(try Data(contentsOf: URL(fileURLWithPath: sealed))), name: object)
                }
                let manifest = try JSONLine.decode(BackupManifest.self, from: Data(plain))
                guard manifest.id == id else { throw ReplicaError.corrupt(object: object, detail: "it holds the manifest of \(manifest.id)") }
                try DurableFile.write(Data(plain), to: location + "/" + id + ".json")
                return manifest
            } catch let error as ReplicaError {
                if case .wrongKey = error { throw error }
                problems.append("\(sources[index].name): \(error)")
            } catch {
                problems.append("\(sources[index].name): \(object): \(error)")
            }
        }
        return nil
    }

    /// Downloads and decrypts the snapshot's data from the first holder whose copy verifies
    /// (SHA-256 as in its manifest, integrity_check); returns that holder.
    private func snapshot(_ copy: BackupCatalog.Copy, holders: [Int], problems: inout [String], rejected: inout [String]) async throws -> Int? {
        let object = "snapshots/" + copy.manifest.id + ".sqlite.enc"
        let check = RestoreEngine(dataDir: location, livePath: location + "/unused")
        for index in holders {
            let sealed = downloads + "/" + sources[index].name + "-" + copy.manifest.id + ".sqlite.enc"
            defer { unlink(sealed) }
            do {
                try await sources[index].remote.download(object, to: sealed)
                try await BlockingPool.shared.run("decrypting and checking \(object)", deadline: .seconds(6 * 3600)) { [cipher] in
                    unlink(copy.file)
                    try cipher.decryptFile(sealed, name: object, to: copy.file)
                    unlink(sealed)
                    try check.check(copy)
                }
                return index
            } catch let error as ReplicaError {
                if case .wrongKey = error { throw error }
                problems.append("\(sources[index].name): \(error)")
            } catch {
                problems.append("\(sources[index].name): snapshot \(copy.manifest.id) does not verify: \(error)")
            }
            unlink(copy.file)
        }
        rejected.append("\(copy.manifest.id): no replica has a copy that opens and verifies")
        return nil
    }

    // MARK: - The journal

    /// Puts together, in `location/journal/<timeline>/`, every segment that can hold entries
    /// after `position`: from the first source, then from the others where it has a hole, a
    /// damaged object, or less.
    private func journal(after position: JournalPosition, listings: [ReplicaListing?], into fetched: inout Fetched) async throws {
        let timeline = position.timeline
        var known = Set(listings.compactMap { $0?.segmentNames(timeline: timeline) }.flatMap { $0 })
        // A drill expects every segment shipped, even one the replica lost entirely.
        for key in shipped?.segments.keys ?? [:].keys where key.hasPrefix(timeline + "/") {
            known.insert(String(key.dropFirst(timeline.count + 1)))
        }
        let names = ReplicaListing.segmentsAfter(position.sequence, names: known.sorted())
        guard !names.isEmpty else { return }
        var downloaded = Set<Int>()
        var result: (segments: [String: Int], problems: [String], bad: Set<String>) = ([:], [], [])
        // The first source alone, then with the others when they can add anything.
        for pass in 0..<2 {
            let using = pass == 0 ? [0] : Array(listings.indices.filter { listings[$0] != nil })
            for index in using where !downloaded.contains(index) {
                downloaded.insert(index)
                guard names.contains(where: { listings[index]?.segments[timeline + "/" + $0] != nil }) else { continue }
                try await sources[index].remote.downloadFolder(
                    "journal/" + timeline, to: downloads + "/" + sources[index].name, including: names
                )
            }
            result = try await assemble(timeline: timeline, names: names, listings: listings, using: Set(using))
            let needsOthers = result.problems.isEmpty == false || names.contains { name in
                let key = timeline + "/" + name
                return listings.dropFirst().contains { listing in
                    ReplicaListing.contiguousEnd(listing?.segments[key] ?? []).end > (result.segments[key] ?? 0)
                }
            }
            if pass == 0, !needsOthers || listings.count == 1 { break }
        }
        fetched.segments = result.segments
        fetched.problems += result.problems
        if let shipped {
            for name in names {
                let key = timeline + "/" + name
                if let sent = shipped.segments[key], (result.segments[key] ?? 0) < sent {
                    fetched.missing.append("journal segment \(key): \(result.segments[key] ?? 0) of the \(sent) bytes shipped are there")
                }
            }
        }
    }

    /// Writes each segment from the pieces of the sources in `using`, each byte from the first
    /// source that has it intact. Returns the bytes of each segment and what went wrong.
    private func assemble(timeline: String, names: [String], listings: [ReplicaListing?], using: Set<Int>) async throws -> (segments: [String: Int], problems: [String], bad: Set<String>) {
        let sources = self.sources
        let downloads = self.downloads
        let directory = JournalLayout.timelineDirectory(location, timeline: timeline)
        let cipher = self.cipher
        return try await BlockingPool.shared.run("putting the journal together", deadline: .seconds(6 * 3600)) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var lengths: [String: Int] = [:]
            var problems: [String] = []
            var bad = Set<String>()
            for name in names {
                let key = timeline + "/" + name
                var assembly = SegmentAssembly(candidates: listings.indices.filter { using.contains($0) }.flatMap { index in
                    (listings[index]?.segments[key] ?? []).map { SegmentAssembly.Candidate(source: index, piece: $0) }
                })
                let output = directory + "/" + name
                unlink(output)
                let file = try ReplicaFile(creating: output)
                var position = 0
                var substitutes: [Int: (from: Int, to: Int)] = [:]
                while let next = assembly.next(at: position) {
                    let local = downloads + "/" + sources[next.source].name + "/" + next.piece.object.dropFirst("journal/".count + timeline.count + 1)
                    do {
                        let sealed = try Data(contentsOf: URL(fileURLWithPath: local))
                        let plain = try cipher.open(Array(sealed), name: next.piece.object)
                        guard plain.count == next.piece.length else {
                            throw ReplicaError.corrupt(object: next.piece.object, detail: "it holds \(plain.count) bytes, its size says \(next.piece.length)")
                        }
                        try file.append(Array(plain[(position - next.piece.offset)...]))
                        if next.source != 0 {
                            let range = substitutes[next.source].map { ($0.from, next.piece.end) } ?? (position, next.piece.end)
                            substitutes[next.source] = range
                        }
                        position = next.piece.end
                    } catch let error as ReplicaError {
                        if case .wrongKey = error { throw error }
                        problems.append("\(sources[next.source].name): \(error)")
                        assembly.markBad(next)
                        bad.insert(SegmentAssembly.key(next))
                    } catch {
                        problems.append("\(sources[next.source].name): \(next.piece.object) is missing after the download: \(error)")
                        assembly.markBad(next)
                    }
                }
                try file.sync()
                for (source, range) in substitutes.sorted(by: { $0.key < $1.key }) where !problems.isEmpty {
                    problems.append("bytes \(range.from)–\(range.to) of journal segment \(key) were taken from replica \(sources[source].name)")
                }
                if assembly.reach > position {
                    problems.append("bytes from \(position) of journal segment \(key) are on no replica intact (an object is damaged or was deleted): the replay stops there")
                }
                lengths[key] = position
            }
            return (lengths, problems, bad)
        }
    }
}

extension ReplicaListing {
    /// Only what `shipped` records: the snapshots in it, and journal pieces inside the bytes sent.
    func limited(to shipped: ReplicaRecovery.Shipped) -> ReplicaListing {
        var listing = self
        listing.snapshots = snapshots.filter { shipped.snapshots.contains($0) }
        listing.segments = [:]
        for (key, pieces) in segments {
            let inside = pieces.filter { $0.end <= (shipped.segments[key] ?? 0) }
            if !inside.isEmpty { listing.segments[key] = inside }
        }
        return listing
    }
}
