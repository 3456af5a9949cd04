import IPC
import Logging
import Synchronization
import Testing

@testable import BotWorker

/// Requests carry ids and replies are matched by them; a supervisor of another protocol version
/// is refused with both versions named.
@Suite struct SupervisorLinkTests {
    /// A link whose sent messages arrive on the returned stream, as the supervisor would read them.
    func link() -> (SupervisorLink, AsyncStream<WorkerMessage>) {
        let (sent, continuation) = AsyncStream.makeStream(of: WorkerMessage.self)
        let link = SupervisorLink(send: { continuation.yield($0) }, logger: Logger(label: "bot"))
        return (link, sent)
    }

    @Test func repliesGoToTheRequestTheyNameEvenOutOfOrder() async throws {
        let (link, sent) = link()
        try await withThrowingTaskGroup(of: (BackupReason, BackupReply).self) { group in
            group.addTask { (.preMigration, try await link.backup(.preMigration, migrations: ["xp-v2"])) }
            group.addTask { (.journal, try await link.backup(.journal, detail: "the journal in /b takes writes again")) }
            // Both requests are outstanding before either is answered.
            var requests: [BackupRequest] = []
            for await message in sent {
                if case .backupRequest(let request) = message { requests.append(request) }
                if requests.count == 2 { break }
            }
            #expect(Set(requests.map(\.id)).count == 2)
            // Answered in the reverse order of their arrival, each naming its request.
            for request in requests.reversed() {
                #expect(link.receive(.backupReply(.init(id: request.id, ok: request.reason == .journal, message: "answer to \(request.reason.rawValue)"))) == .goOn)
            }
            var answers: [BackupReason: BackupReply] = [:]
            for try await (reason, reply) in group { answers[reason] = reply }
            let byReason = Dictionary(uniqueKeysWithValues: requests.map { ($0.reason, $0.id) })
            #expect(answers[.preMigration] == BackupReply(id: byReason[.preMigration]!, ok: false, message: "answer to pre-migration"))
            #expect(answers[.journal] == BackupReply(id: byReason[.journal]!, ok: true, message: "answer to journal"))
        }
    }

    @Test func aReplyNamingNoRequestIsIgnoredAndAClosedConnectionAnswersEveryWaiter() async throws {
        let (link, sent) = link()
        #expect(link.receive(.backupReply(.init(id: RequestID(41), ok: true, message: "stray"))) == .goOn)
        async let reply = link.backup(.postMigration)
        for await message in sent {
            if case .backupRequest = message { break }
        }
        link.closed()
        let answer = try await reply
        #expect(!answer.ok && answer.message.contains("closed"))
        // Asked after the connection closed: answered at once.
        #expect(try await link.backup(.journal).ok == false)
    }

    @Test func aShutdownEndsTheLink() {
        let (link, _) = link()
        #expect(link.receive(.shutdown(reason: "restart")) == .shutdown(reason: "restart"))
        #expect(link.receive(.snapshotTaken(sequence: 3)) == .goOn)
    }

    @Test func aWelcomeOfAnotherVersionIsRefusedNamingBoth() throws {
        let line = #"{"type":"welcome","protocolVersion":1,"heartbeatIntervalMs":5000,"databasePath":"/d/bot.sqlite"}"#
        #expect {
            try SupervisorLink.welcome(from: line)
        } throws: { error in
            let text = "\(error)"
            return error is SupervisorLink.Refused && text.contains("protocol \(WorkerProtocol.version)") && text.contains("protocol 1")
                && text.contains("worker") && text.contains("supervisor")
        }
    }

    @Test func theSupervisorsRefusalIsPassedOnInItsWords() throws {
        let line = try JSONLine.encode(SupervisorMessage.error(ErrorBody(code: "protocol-version", message: WorkerProtocol.versionMismatch(own: "supervisor", peer: "worker", peerVersion: 3))))
        #expect {
            try SupervisorLink.welcome(from: line)
        } throws: { error in
            "\(error)".contains("protocol 3") && "\(error)".contains("protocol-version")
        }
        let welcome = SupervisorMessage.Welcome(heartbeatIntervalMs: 100, databasePath: "/d", discord: DiscordSettings(mode: .sandbox), journal: JournalSettings(enabled: false, locations: [], segmentMaxBytes: 0))
        #expect(try SupervisorLink.welcome(from: try JSONLine.encode(SupervisorMessage.welcome(welcome))) == welcome)
    }
}
