import FoundationEssentials
import IPC
import ServiceLifecycle
import Synchronization

/// The dashboard's charts, kept by the supervisor itself (no Prometheus needed): one sample every
/// 10 s for the last 24 h of events/s, event→commit latency, worker and supervisor RSS and
/// restarts. 8,640 samples of six numbers: about 400 KB.
struct SampleSeries: Sendable {
    struct Sample: Codable, Sendable, Equatable {
        /// Seconds since 1970.
        var t: Double
        var eventsPerSecond: Double?
        var latencyP50Ms: Double?
        var latencyP99Ms: Double?
        var workerRSS: Int?
        var supervisorRSS: Int?
        var restarts: Int
    }

    private(set) var samples: [Sample] = []
    /// The worker and its event counter at the previous sample, for the rate.
    private var previous: (pid: Int32?, received: Int, at: Double)?
    let capacity: Int

    init(capacity: Int = 8640) {
        self.capacity = capacity
    }

    /// Adds the sample of `snapshot` taken at `now`. The events/s is the counter's growth since
    /// the previous sample of the same worker (a new worker's counter starts again at 0).
    mutating func add(_ snapshot: StatusSnapshot, now: Double) {
        let received = snapshot.worker.events?.received
        var rate: Double?
        if let received, let previous, previous.pid == snapshot.worker.pid, now > previous.at, received >= previous.received {
            rate = (Double(received - previous.received) / (now - previous.at) * 10).rounded() / 10
        }
        previous = received.map { (snapshot.worker.pid, $0, now) }
        samples.append(Sample(
            t: now, eventsPerSecond: rate,
            latencyP50Ms: snapshot.worker.events?.writeLatencyP50Ms, latencyP99Ms: snapshot.worker.events?.writeLatencyP99Ms,
            workerRSS: snapshot.worker.rssBytes, supervisorRSS: snapshot.supervisor.rssBytes, restarts: snapshot.worker.restarts
        ))
        if samples.count > capacity { samples.removeFirst(samples.count - capacity) }
    }

    /// The samples newer than `since` (seconds since 1970).
    func since(_ since: Double) -> [Sample] {
        guard let start = samples.firstIndex(where: { $0.t > since }) else { return [] }
        return Array(samples[start...])
    }
}

/// Takes a sample every `interval` from the status store.
final class DashboardSampler: Service, Sendable {
    private let store: StatusStore
    private let interval: Duration
    private let series = Mutex(SampleSeries())

    init(store: StatusStore, interval: Duration = .seconds(10)) {
        self.store = store
        self.interval = interval
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let snapshot = await self.store.snapshot()
                let now = Date().timeIntervalSince1970
                self.series.withLock { $0.add(snapshot, now: now) }
                guard (try? await Task.sleep(for: self.interval)) != nil else { return }
            }
        }
    }

    func samples(since: Double = 0) -> [SampleSeries.Sample] {
        series.withLock { $0.since(since) }
    }
}
