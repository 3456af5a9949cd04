#if canImport(Glibc)
import Glibc
#endif
import IPC

/// A value computed on a thread of its own while the caller does something else; `value()`
/// waits for it. For blocking work only (two checks of one file on a two-core machine).
final class ConcurrentResult<T: Sendable>: @unchecked Sendable {  // `result` is written before the post, read after the wait
    private var result: Result<T, any Error>?
    private let done = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init(_ purpose: OSThread.Purpose = .blockingWork, _ work: @escaping @Sendable () throws -> T) {
        sem_init(done, 0, 0)
        let started = OSThread.detach(purpose) { [self] in
            result = Result { try work() }
            sem_post(done)
        }
        if !started {
            result = Result { try work() }
            sem_post(done)
        }
    }

    deinit {
        sem_destroy(done)
        done.deallocate()
    }

    func value() throws -> T {
        while sem_wait(done) != 0 {}
        sem_post(done)  // a second call returns at once
        return try result!.get()
    }
}
