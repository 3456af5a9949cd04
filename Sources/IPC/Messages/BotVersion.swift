/// The version of this build of `bot-supervisor` and `bot-worker`.
public enum BotVersion {
    public static let current = "0.1.0"
}
