import Dispatch
import Glibc
import ServiceLifecycle

/// `BOT_WORKER_FAULT=crash-on-sigusr1`: traps when SIGUSR1 arrives, on a Swift concurrency
/// thread, so that the Swift runtime's backtracer prints the crash on stderr (and the supervisor
/// files it in `errors.log`), exactly as a real bug would. Runs in the worker's service group
/// only under that fault.
struct SignalFaultService: Service {
    func run() async throws {
        // SIGUSR1 would otherwise end the process at once (its default action), with no backtrace.
        signal(SIGUSR1, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGUSR1)
        let (signals, continuation) = AsyncStream.makeStream(of: Void.self)
        source.setEventHandler { continuation.yield() }
        source.resume()
        defer { source.cancel() }
        try await cancelWhenGracefulShutdown {
            for await _ in signals {
                preconditionFailure("injected fault: BOT_WORKER_FAULT=crash-on-sigusr1")
            }
        }
    }
}
