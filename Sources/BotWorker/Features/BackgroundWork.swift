/// Work started by an event or a command that must not hold up its answer (a guild's sweep, the
/// rewards of members already at a level, a snapshot request): submitted here and run as a child
/// of the discarding task group `run()` owns, which `BotCore` runs for the worker's lifetime.
/// `stop()` cancels it before the features clean up, so no job outlives the worker unseen or
/// writes to a closed database.
struct BackgroundWork: Sendable {
    typealias Job = @Sendable () async -> Void

    private let jobs: AsyncStream<Job>
    private let submitted: AsyncStream<Job>.Continuation
    private let ended: AsyncStream<Void>
    private let end: AsyncStream<Void>.Continuation

    init() {
        (jobs, submitted) = AsyncStream.makeStream(of: Job.self)
        (ended, end) = AsyncStream.makeStream(of: Void.self)
    }

    /// Runs `job` soon, in `run()`'s group (kept until `run()` starts, dropped once stopped).
    func submit(_ job: @escaping Job) {
        submitted.yield(job)
    }

    /// Runs every submitted job as a child task, until `stop()` or cancellation; the jobs running
    /// then are cancelled and awaited.
    func run() async {
        await withDiscardingTaskGroup { group in
            for await job in jobs {
                group.addTask { await job() }
            }
            group.cancelAll()
        }
        end.finish()
    }

    /// Takes no more jobs, cancels those running and waits until they ended. Only while `run()`
    /// runs (or has run).
    func stop() async {
        submitted.finish()
        for await _ in ended {}
    }
}
