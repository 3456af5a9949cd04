import FoundationEssentials
import IPC
import Logging
import TestSupport
import Testing

@testable import BotWorker

/// Interactions are answered within Discord's 3 s, errors in plain words, and counted.
@Suite struct CommandRouterTests {
    func interaction(command: String) -> JSONValue {
        .object([
            "id": .string("900"), "token": .string("tok"), "type": .integer(2), "application_id": .string("77"),
            "guild_id": .string("1"), "channel_id": .string("2"),
            "member": .object(["user": .object(["id": .string("3")]), "roles": .array([]), "permissions": .string("0")]),
            "data": .object(["name": .string(command), "options": .array([
                .object(["name": .string("member"), "type": .integer(6), "value": .string("44")]),
            ])]),
        ])
    }

    func router(_ server: ScriptedHTTPServer, deferAfter: Duration = .seconds(2), faults: WorkerFaults = .none) async -> CommandRouter {
        let router = CommandRouter(logger: Logger(label: "bot"), audit: Logger(label: "audit"), deferAfter: deferAfter, faults: faults)
        await router.attach(DiscordREST(baseURL: server.baseURL, token: Secret("t"), logger: Logger(label: "test")))
        return router
    }

    @Test func aQuickHandlerIsAnsweredWithItsMessage() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 204) }
        let router = await router(server)
        await router.register(command: .object(["name": .string("rank")]), feature: "xp") { interaction in
            .visible("member \(interaction.option("member")?.stringValue ?? "?")")
        }
        await router.handle(interaction(command: "rank"))
        let request = try #require(server.requests.first)
        #expect(request.uri == "/api/v10/interactions/900/tok/callback")
        #expect(request.body.contains(#""type":4"#) && request.body.contains("member 44"))
        #expect(!request.body.contains(#""flags":64"#))
        #expect(await router.succeeded == 1)
        try await server.close()
    }

    @Test func aSlowHandlerIsDeferredThenFollowedUp() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 204) }
        let router = await router(server, deferAfter: .milliseconds(100))
        await router.register(command: .object(["name": .string("slow")]), feature: "test") { _ in
            // Slow until Discord has the deferred answer (ordered by the server, not by sleeps).
            let deadline = ContinuousClock.now + .seconds(10)
            while server.requests.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            return .ephemeral("done")
        }
        await router.handle(interaction(command: "slow"))
        let requests = server.requests
        #expect(requests.count == 2)
        #expect(requests[0].uri.hasSuffix("/callback") && requests[0].body.contains(#""type":5"#))
        #expect(requests[1].uri == "/api/v10/webhooks/77/tok" && requests[1].body.contains("done"))
        try await server.close()
    }

    @Test func failuresAreAnsweredInPlainWordsAndCounted() async throws {
        struct Broken: Error {}
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 204) }
        let router = await router(server)
        await router.register(command: .object(["name": .string("broken")]), feature: "test") { _ in throw Broken() }
        await router.register(command: .object(["name": .string("refused")]), feature: "test") { _ in
            throw CommandRefusal(description: "You need Manage Roles for that.")
        }
        await router.handle(interaction(command: "broken"))
        await router.handle(interaction(command: "refused"))
        await router.handle(interaction(command: "unknown"))
        let bodies = server.requests.map(\.body)
        #expect(bodies.count == 3)
        #expect(bodies[0].contains("Something went wrong") && bodies[0].contains(#""flags":64"#))
        #expect(bodies[1].contains("You need Manage Roles for that."))
        #expect(bodies[2].contains("not available"))
        #expect(await router.failed == 1)
        #expect(await router.succeeded == 1)
        try await server.close()
    }

    @Test func theCommandThrowsFaultIsGivenNotReadFromTheEnvironment() async throws {
        // The process environment has no BOT_WORKER_FAULT: the router fails the command because
        // it was handed the fault, and a router handed none runs the same handler.
        #expect(ProcessInfo.processInfo.environment[WorkerFaults.environmentKey] == nil)
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 204) }
        let faulty = await router(server, faults: WorkerFaults(fault: .commandThrows))
        let healthy = await router(server)
        for router in [faulty, healthy] {
            await router.register(command: .object(["name": .string("rank")]), feature: "xp") { _ in .visible("rank 1") }
            await router.handle(interaction(command: "rank"))
        }
        let bodies = server.requests.map(\.body)
        #expect(bodies.count == 2)
        #expect(bodies[0].contains("Something went wrong"))
        #expect(bodies[1].contains("rank 1"))
        #expect(await faulty.failed == 1)
        #expect(await faulty.succeeded == 0)
        #expect(await healthy.succeeded == 1)
        try await server.close()
    }
}
