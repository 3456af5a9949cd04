import FoundationEssentials
import IPC
import Testing

@testable import BotWorker

/// The challenge's rules as pure values: questions from an injected random source, answers
/// compared trimmed and case-insensitively, and the attempt and cooldown state machine on an
/// injected clock.
@Suite struct VerificationChallengeTests {
    /// SplitMix64: the same numbers for the same seed.
    struct SeededRandom: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    let start = Date(timeIntervalSince1970: 1_764_950_400)
    let question = ChallengeQuestion(prompt: "What is 7 + 5?", answer: "12")

    @Test func questionsComeFromTheRandomSourceAndFitAModalLabel() throws {
        var a = SeededRandom(state: 42), b = SeededRandom(state: 42)
        let sums = (0..<50).compactMap { _ in ChallengeKind.sum.question(using: &a) }
        #expect(sums == (0..<50).compactMap { _ in ChallengeKind.sum.question(using: &b) })
        for sum in sums {
            let parts = sum.prompt.dropFirst("What is ".count).dropLast().split(separator: " + ").compactMap { Int($0) }
            #expect(parts.count == 2 && parts.allSatisfy { (2...9).contains($0) })
            #expect(Int(sum.answer) == parts.reduce(0, +))
        }
        #expect(Set(sums.map(\.prompt)).count > 10)
        var random = SeededRandom(state: 7)
        let word = try #require(ChallengeKind.word.question(using: &random))
        #expect(word.prompt == "Type the word: \(word.answer)" && ChallengeKind.words.contains(word.answer))
        #expect(ChallengeKind.none.question(using: &random) == nil)
        for kind in ChallengeKind.allCases {
            for _ in 0..<20 { #expect((kind.question(using: &random)?.prompt.count ?? 0) <= 45) }
        }
    }

    @Test func answersAreComparedTrimmedAndCaseInsensitively() {
        #expect(ChallengeQuestion.matches(" 12\n", "12"))
        #expect(ChallengeQuestion.matches("LanTern ", "lantern"))
        #expect(!ChallengeQuestion.matches("1 2", "12"))
        #expect(!ChallengeQuestion.matches("", "12"))
        #expect(!ChallengeQuestion.matches("lanterns", "lantern"))
    }

    @Test func threeWrongAnswersStartTheCooldownAndANewQuestionFollowsIt() throws {
        var asked = 0
        let next: () -> ChallengeQuestion = {
            asked += 1
            return ChallengeQuestion(prompt: "What is \(asked) + 1?", answer: String(asked + 1))
        }
        // First press: a new question.
        var (state, press) = VerificationChallenge.press(nil, now: start, newQuestion: next)
        guard case .ask(let challenge, new: true) = press else { Issue.record("\(press)"); return }
        #expect(challenge.question.answer == "2" && challenge.expiresAt == start.addingTimeInterval(600))
        #expect(challenge.modal["custom_id"]?.stringValue == "verification:challenge:\(challenge.id)")
        #expect(VerificationChallenge.id(fromCustomID: "verification:challenge:\(challenge.id)") == challenge.id)

        // Two wrong answers, each pressing again shows the same question.
        var answer: VerificationChallenge.SubmitAnswer
        (state, answer) = VerificationChallenge.submit(state, id: challenge.id, answer: "3", now: start + 10, cooldown: 60)
        #expect(answer == .wrong(left: 2))
        (state, press) = VerificationChallenge.press(state, now: start + 11, newQuestion: next)
        #expect(press == .ask(challenge.with(wrongAnswers: 1), new: false))
        (state, answer) = VerificationChallenge.submit(state, id: challenge.id, answer: "nope", now: start + 20, cooldown: 60)
        #expect(answer == .wrong(left: 1))
        // The third: the cooldown, 60 s from now.
        (state, answer) = VerificationChallenge.submit(state, id: challenge.id, answer: "4", now: start + 30, cooldown: 60)
        #expect(answer == .wrongCoolingDown(until: start + 90))
        // During it: pressing or answering (even right) says when it ends.
        (state, press) = VerificationChallenge.press(state, now: start + 89, newQuestion: next)
        #expect(press == .coolingDown(until: start + 90))
        (state, answer) = VerificationChallenge.submit(state, id: challenge.id, answer: "2", now: start + 40, cooldown: 60)
        #expect(answer == .coolingDown(until: start + 90))
        #expect(asked == 1)
        // After it: a new question, the count reset; the old modal no longer counts.
        (state, press) = VerificationChallenge.press(state, now: start + 91, newQuestion: next)
        guard case .ask(let second, new: true) = press else { Issue.record("\(press)"); return }
        #expect(second.question.answer == "3" && second.wrongAnswers == 0 && second.cooldownUntil == nil && second.id != challenge.id)
        (state, answer) = VerificationChallenge.submit(state, id: challenge.id, answer: "3", now: start + 92, cooldown: 60)
        #expect(answer == .expired)
        // The right answer passes and ends the challenge.
        (state, answer) = VerificationChallenge.submit(state, id: second.id, answer: " 3 ", now: start + 93, cooldown: 60)
        #expect(answer == .passed && state == nil)
        (state, answer) = VerificationChallenge.submit(state, id: second.id, answer: "3", now: start + 94, cooldown: 60)
        #expect(answer == .expired)
    }

    @Test func anUnansweredQuestionExpiresAndAZeroCooldownAllowsANewOneAtOnce() {
        let open = VerificationChallenge(question: question, now: start)
        let (_, late) = VerificationChallenge.submit(open, id: open.id, answer: "12", now: start + 601, cooldown: 60)
        #expect(late == .expired)
        let (renewed, press) = VerificationChallenge.press(open, now: start + 601) { ChallengeQuestion(prompt: "Type the word: anchor", answer: "anchor") }
        #expect(renewed?.question.answer == "anchor" && renewed?.issuedAt == start + 601)
        if case .ask(_, let new) = press { #expect(new) } else { Issue.record("\(press)") }

        var state: VerificationChallenge? = open
        var answer = VerificationChallenge.SubmitAnswer.expired
        for _ in 0..<3 { (state, answer) = VerificationChallenge.submit(state, id: open.id, answer: "0", now: start + 1, cooldown: 0) }
        #expect(answer == .wrongCoolingDown(until: start + 1))
        let (_, after) = VerificationChallenge.press(state, now: start + 1) { question }
        if case .ask(_, let new) = after { #expect(new) } else { Issue.record("\(after)") }
    }

    @Test func theModalHasTheShapeDiscordRequires() throws {
        let modal = VerificationChallenge(question: question, now: start).modal
        let title = try #require(modal["title"]?.stringValue)
        #expect(!title.isEmpty && title.count <= 45)
        let rows = modal["components"]?.arrayValue ?? []
        #expect(rows.count == 1 && rows[0]["type"]?.intValue == 1)
        let input = rows[0]["components"]?.arrayValue.first ?? .null
        #expect(input["type"]?.intValue == 4 && input["style"]?.intValue == 1)
        #expect(input["custom_id"]?.stringValue == VerificationChallenge.inputID && input["label"]?.stringValue == "What is 7 + 5?")
        #expect(CommandRouter.callback(.modal(modal)) == .object(["type": .integer(9), "data": modal]))
        #expect(CommandRouter.callback(.ephemeral("x"))["type"]?.intValue == 4)
    }

    @Test func aSubmittedModalsFieldsAndTheMembersScreeningAreRead() throws {
        let interaction = try #require(Interaction(.object([
            "id": .string("5"), "token": .string("t"), "type": .integer(5), "application_id": .string("6"), "guild_id": .string("1"),
            "member": .object(["user": .object(["id": .string("3")]), "roles": .array([]), "pending": .bool(true),
                               "joined_at": .string("2026-12-01T10:00:00.000000+00:00")]),
            "data": .object(["custom_id": .string("verification:challenge:9"), "components": .array([
                .object(["type": .integer(1), "components": .array([
                    .object(["type": .integer(4), "custom_id": .string("answer"), "value": .string(" 12 ")]),
                ])]),
            ])]),
        ])))
        #expect(interaction.field("answer") == " 12 " && interaction.field("other") == nil)
        #expect(interaction.customID == "verification:challenge:9" && interaction.memberPending)
        #expect(interaction.memberJoinedAt == Timestamp.parse("2026-12-01T10:00:00Z"))
    }

    @Test func discordsGatesAreWaitedForByLevel() {
        let now = start
        let old = now.addingTimeInterval(-86400 * 400), joinedLongAgo = now.addingTimeInterval(-86400)
        #expect(DiscordGate.wait(pending: false, level: 4, created: old, joined: joinedLongAgo, now: now) == nil)
        #expect(DiscordGate.wait(pending: true, level: 0, created: old, joined: joinedLongAgo, now: now) == .init(screening: true, readyAt: nil))
        // MEDIUM: the account older than 5 minutes.
        let young = now.addingTimeInterval(-60)
        #expect(DiscordGate.wait(pending: false, level: 2, created: young, joined: now, now: now) == .init(screening: false, readyAt: young + 300))
        #expect(DiscordGate.wait(pending: false, level: 1, created: young, joined: now, now: now) == nil)
        // HIGH: also a member for more than 10 minutes (whichever comes later).
        #expect(DiscordGate.wait(pending: false, level: 3, created: old, joined: now - 120, now: now) == .init(screening: false, readyAt: now + 480))
        #expect(DiscordGate.wait(pending: false, level: 3, created: now, joined: now - 590, now: now) == .init(screening: false, readyAt: now + 300))
        #expect(DiscordGate.wait(pending: true, level: 4, created: old, joined: now, now: now) == .init(screening: true, readyAt: now + 600))
        #expect(DiscordGate.Wait(screening: true, readyAt: nil).explanation.contains("membership screening"))
    }
}

extension VerificationChallenge {
    func with(wrongAnswers: Int) -> VerificationChallenge {
        var copy = self
        copy.wrongAnswers = wrongAnswers
        return copy
    }
}

/// What `/verification status` says of a member who is not verified yet.
@Suite struct VerificationStatusTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func anOpenQuestionACooldownAndAWaitAreEachNamed() {
        let later = Self.now.addingTimeInterval(300)
        #expect(VerificationFeature.unfinished(challenge: nil, waiting: nil, now: Self.now) == nil)
        #expect(VerificationFeature.unfinished(challenge: (1, nil, later), waiting: nil, now: Self.now) == "a question is open, 1 wrong answer so far")
        #expect(VerificationFeature.unfinished(challenge: (3, later, later), waiting: nil, now: Self.now)
            == "cooling down after 3 wrong answers, until \(Timestamp.string(later))")
        // An expired question and an ended cooldown are nothing to report.
        #expect(VerificationFeature.unfinished(challenge: (3, Self.now.addingTimeInterval(-1), Self.now.addingTimeInterval(-1)), waiting: nil, now: Self.now) == nil)
        #expect(VerificationFeature.unfinished(challenge: nil, waiting: (true, nil), now: Self.now) == "passed, waiting for Discord's membership screening")
        #expect(VerificationFeature.unfinished(challenge: nil, waiting: (false, later), now: Self.now)
            == "passed, waiting for the server's verification level until \(Timestamp.string(later))")
    }
}
