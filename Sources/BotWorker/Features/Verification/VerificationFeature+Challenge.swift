import FoundationEssentials
import GRDB
import IPC

/// The challenge: Verify answers with a modal asking the question; the modal submitted is checked
/// here. Each step reads and writes the member's row of `verification_challenges` and stores its
/// attempt in one transaction, so two quick presses cannot both count or both pass.
extension VerificationFeature {
    /// Verify pressed with a challenge set up: the question in a modal, or when the cooldown ends.
    func ask(_ interaction: Interaction, _ settings: Settings) async throws -> InteractionReply {
        let (guild, user, kind) = (settings.guild, interaction.user, settings.challenge)
        let now = Date()
        let answer = try await context.database.write("verification.challenge-ask") { db -> VerificationChallenge.PressAnswer in
            let current = try Self.loadChallenge(db, guild: guild, user: user, kind: kind)
            let (next, answer) = VerificationChallenge.press(current, now: now) {
                var random = SystemRandomNumberGenerator()
                return kind.question(using: &random) ?? ChallengeQuestion(prompt: "Type the word: verify", answer: "verify")
            }
            try Self.storeChallenge(db, guild: guild, user: user, kind: kind, next)
            switch answer {
            case .ask(_, new: let new):
                try Self.insertAttempt(db, guild: guild.description, user: user.description, .challengeAsked, new ? "new question" : "same question")
            case .coolingDown(let until):
                try Self.insertAttempt(db, guild: guild.description, user: user.description, .challengeCooldown, "until \(Timestamp.string(until))")
            }
            return answer
        }.value
        switch answer {
        case .ask(let challenge, _):
            logAttempt(guild.description, user, .challengeAsked)
            return .modal(challenge.modal)
        case .coolingDown(let until):
            logAttempt(guild.description, user, .challengeCooldown)
            return .ephemeral("Too many wrong answers. You can try again \(Self.when(until)).")
        }
    }

    /// The modal submitted: checked against the open question.
    func answer(_ interaction: Interaction) async throws -> InteractionReply {
        let (guild, settings): (GuildID, Settings)
        switch try await begin(interaction) {
        case .proceed(let id, let found): (guild, settings) = (id, found)
        case .done(let reply): return reply
        }
        let user = interaction.user
        let (kind, id, text) = (settings.challenge, VerificationChallenge.id(fromCustomID: interaction.customID), interaction.field(VerificationChallenge.inputID) ?? "")
        let cooldown = TimeInterval(settings.challengeCooldownSeconds)
        let now = Date()
        let result = try await context.database.write("verification.challenge-answer") { db -> VerificationChallenge.SubmitAnswer in
            let current = try Self.loadChallenge(db, guild: guild, user: user, kind: kind)
            let (next, result) = VerificationChallenge.submit(current, id: id, answer: text, now: now, cooldown: cooldown)
            try Self.storeChallenge(db, guild: guild, user: user, kind: kind, next)
            let (outcome, detail) = Self.attempt(for: result, wrongAnswers: next?.wrongAnswers ?? 0)
            try Self.insertAttempt(db, guild: guild.description, user: user.description, outcome, detail)
            return result
        }.value
        logAttempt(guild.description, user, Self.attempt(for: result, wrongAnswers: 0).0)
        switch result {
        case .passed:
            return try await admit(Candidate(interaction), settings)
        case .wrong(let left):
            return Self.withRetryButton("That is not the answer. \(left) more tr\(left == 1 ? "y" : "ies") before a pause: press Verify for the question again.")
        case .wrongCoolingDown(let until):
            return .ephemeral("That is not the answer, and that was the third try. You can try again \(Self.when(until)).")
        case .coolingDown(let until):
            return .ephemeral("Too many wrong answers. You can try again \(Self.when(until)).")
        case .expired:
            return Self.withRetryButton("That question is no longer open. Press Verify for a new one.")
        }
    }

    static func attempt(for result: VerificationChallenge.SubmitAnswer, wrongAnswers: Int) -> (Outcome, String?) {
        switch result {
        case .passed: (.challengePassed, nil)
        case .wrong: (.challengeWrong, "\(wrongAnswers) of \(VerificationChallenge.allowedWrongAnswers)")
        case .wrongCoolingDown(let until): (.challengeWrong, "\(wrongAnswers) of \(VerificationChallenge.allowedWrongAnswers); cooldown until \(Timestamp.string(until))")
        case .coolingDown(let until): (.challengeCooldown, "until \(Timestamp.string(until))")
        case .expired: (.challengeExpired, nil)
        }
    }

    /// "<t:1764950400:R> (at 16:00:00 UTC)": Discord shows the first in the member's own time.
    static func when(_ date: Date) -> String {
        let iso = Timestamp.string(date)
        let clock = iso.dropFirst(11).prefix(8)
        return "<t:\(Int64(date.timeIntervalSince1970.rounded(.up))):R> (at \(clock) UTC)"
    }

    private static func withRetryButton(_ text: String) -> InteractionReply {
        var reply = InteractionReply.ephemeral(text)
        reply.components = .array([.object(["type": .integer(1), "components": .array([.object([
            "type": .integer(2), "style": .integer(1), "label": .string("Verify"), "custom_id": .string(buttonID),
        ])])])])
        return reply
    }

    // MARK: - Storage

    /// The member's open challenge of `kind` (or cooldown, of any kind).
    static func loadChallenge(_ db: Database, guild: GuildID, user: UserID, kind: ChallengeKind) throws -> VerificationChallenge? {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT challenge_id, kind, prompt, answer, wrong_answers, cooldown_until, issued_at, expires_at
            FROM verification_challenges WHERE guild_id = ? AND user_id = ?
            """, arguments: [guild.description, user.description]) else { return nil }
        let cooldown = (row["cooldown_until"] as String?).flatMap(Timestamp.parse)
        // A question of another kind (the setup changed since) is not shown again.
        guard cooldown != nil || row["kind"] as String == kind.rawValue,
              let issued = Timestamp.parse(row["issued_at"]), let expires = Timestamp.parse(row["expires_at"]) else { return nil }
        return VerificationChallenge(
            id: row["challenge_id"], question: ChallengeQuestion(prompt: row["prompt"], answer: row["answer"]),
            wrongAnswers: row["wrong_answers"], cooldownUntil: cooldown, issuedAt: issued, expiresAt: expires
        )
    }

    static func storeChallenge(_ db: Database, guild: GuildID, user: UserID, kind: ChallengeKind, _ challenge: VerificationChallenge?) throws {
        guard let challenge else {
            try db.execute(sql: "DELETE FROM verification_challenges WHERE guild_id = ? AND user_id = ?", arguments: [guild.description, user.description])
            return
        }
        try db.execute(sql: """
            INSERT INTO verification_challenges (guild_id, user_id, challenge_id, kind, prompt, answer, wrong_answers, cooldown_until, issued_at, expires_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET challenge_id = excluded.challenge_id, kind = excluded.kind, prompt = excluded.prompt,
                answer = excluded.answer, wrong_answers = excluded.wrong_answers, cooldown_until = excluded.cooldown_until,
                issued_at = excluded.issued_at, expires_at = excluded.expires_at
            """, arguments: [
                guild.description, user.description, challenge.id, kind.rawValue, challenge.question.prompt, challenge.question.answer,
                challenge.wrongAnswers, challenge.cooldownUntil.map { Timestamp.string($0) }, Timestamp.string(challenge.issuedAt),
                Timestamp.string(challenge.expiresAt),
            ])
    }
}
