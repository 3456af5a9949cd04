import Logging

/// Delivers each published event to the features that subscribed to its kind, one handler after
/// the other. A handler's error is caught and logged here, at the boundary: one feature's failure
/// never reaches another feature or the core.
actor EventBus {
    typealias Handler = @Sendable (BotEvent) async throws -> Void

    private var handlers: [BotEvent.Kind: [(feature: String, handler: Handler)]] = [:]
    private let logger: Logger
    private(set) var failures = 0

    init(logger: Logger) {
        self.logger = logger
    }

    func subscribe(_ kinds: Set<BotEvent.Kind>, feature: String, _ handler: @escaping Handler) {
        for kind in kinds { handlers[kind, default: []].append((feature, handler)) }
    }

    func publish(_ event: BotEvent) async {
        for (feature, handler) in handlers[event.kind] ?? [] {
            do {
                try await handler(event)
            } catch {
                failures += 1
                logger.error("event handler failed", metadata: [
                    "feature": "\(feature)", "event": "\(event.kind)", "error": "\(error)", "error_type": "\(type(of: error))",
                ])
            }
        }
    }
}
