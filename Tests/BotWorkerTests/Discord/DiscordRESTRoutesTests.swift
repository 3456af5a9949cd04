import Foundation
import TestSupport
import Testing

@testable import BotWorker

/// Every route the bot calls (`DiscordREST.Endpoint.allCases`, the only routes `send` takes) is
/// one Discord describes, with that method, in its OpenAPI description of REST v10
/// (`../shared/discord/openapi.json` beside the checkout). Templates are compared by shape:
/// `{guild}` here is `{guild_id}` there.
@Suite struct DiscordRESTRoutesTests {
    /// This file is Tests/BotWorkerTests/Discord/DiscordRESTRoutesTests.swift.
    static let descriptionPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("shared/discord/openapi.json").path

    static func shape(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("{") ? "{}" : String($0) }.joined(separator: "/")
    }

    /// The description's paths by shape, each with its methods (lowercase).
    static func describedRoutes() throws -> [String: Set<String>] {
        guard let data = FileManager.default.contents(atPath: descriptionPath) else {
            throw TestFailure(description: "Discord's OpenAPI description is missing: expected \(descriptionPath) (shared/discord/openapi.json beside the checkout)")
        }
        guard let description = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let paths = description["paths"] as? [String: [String: Any]] else {
            throw TestFailure(description: "\(descriptionPath) has no `paths` object")
        }
        var routes: [String: Set<String>] = [:]
        for (template, item) in paths {
            routes[shape(template), default: []].formUnion(item.keys)
        }
        return routes
    }

    @Test func everyRouteTheBotCallsIsInDiscordsDescription() throws {
        let described = try Self.describedRoutes()
        #expect(DiscordREST.Endpoint.allCases.count >= 10)
        for endpoint in DiscordREST.Endpoint.allCases {
            let methods = described[Self.shape(endpoint.template)]
            #expect(methods != nil, "\(endpoint): \(endpoint.template) is not a path in Discord's description")
            #expect(methods?.contains(endpoint.method.lowercased()) == true, "\(endpoint): \(endpoint.template) has no \(endpoint.method) in Discord's description (only \(methods?.sorted() ?? []))")
        }
    }

    @Test func shapesIgnoreParameterNames() {
        #expect(Self.shape("/guilds/{guild}/members/{user}") == Self.shape("/guilds/{guild_id}/members/{user_id}"))
        #expect(Self.shape("/guilds/{guild}/members") != Self.shape("/guilds/{guild}/members/{user}"))
    }
}
