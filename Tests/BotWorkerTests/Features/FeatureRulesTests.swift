import FoundationEssentials
import IPC
import Testing

@testable import BotWorker

@Suite struct FeatureRulesTests {
    func interaction(_ options: [String: JSONValue]) -> Interaction {
        let list = options.map { JSONValue.object(["name": .string($0.key), "value": $0.value]) }
        return Interaction(.object([
            "id": .string("1"), "token": .string("t"), "type": .integer(2), "application_id": .string("2"), "guild_id": .string("3"),
            "member": .object(["user": .object(["id": .string("4")]), "roles": .array([])]),
            "data": .object(["name": .string("roleconnection"), "options": .array([.object(["name": .string("add"), "type": .integer(1), "options": .array(list)])])]),
        ]))!
    }

    @Test func aRuleIsBuiltFromTheCommandsOptions() {
        let conditions = RoleConnectionsFeature.conditions(of: interaction([
            "has_role": .string("10"), "lacks_role": .string("11"), "has_any_of": .string("<@&12> <@&13>"),
            "min_level": .integer(5), "verified": .bool(true), "min_account_age_days": .integer(30), "min_member_days": .integer(7),
        ]))
        #expect(Set(conditions.map(\.description)) == Set([
            RoleRule.Condition.hasRole(RoleID(10)), .lacksRole(RoleID(11)), .hasAnyRole([RoleID(12), RoleID(13)]), .levelAtLeast(5),
            .verified, .accountAgeAtLeast(days: 30), .memberForAtLeast(days: 7),
        ].map(\.description)))
        #expect(RoleConnectionsFeature.conditions(of: interaction(["verified": .bool(false)])).isEmpty)
    }

    @Test func conditionsSurviveTheirStoredForm() throws {
        let conditions: [RoleRule.Condition] = [.hasRole(RoleID(1)), .hasAnyRole([RoleID(2), RoleID(3)]), .accountAgeAtLeast(days: 9), .verified]
        let stored = try JSONEncoder().encode(conditions)
        #expect(try JSONDecoder().decode([RoleRule.Condition].self, from: stored) == conditions)
    }

    @Test func theAccountAgeGateSaysFromWhen() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let created = now.addingTimeInterval(-10 * 86400)
        #expect(VerificationFeature.eligibleFrom(created: created, minimumDays: 7, now: now) == nil)
        #expect(VerificationFeature.eligibleFrom(created: created, minimumDays: 30, now: now) == created.addingTimeInterval(30 * 86400))
        #expect(VerificationFeature.eligibleFrom(created: created, minimumDays: 0, now: now) == nil)
    }
}
