import Glibc
import Synchronization
import Testing

@testable import Supervisor

@Suite struct BlockingPoolTests {
    /// A job that blocks in the kernel (a read nobody answers, like statvfs on a dead mount)
    /// is given up on at its deadline, and the pool goes on serving other jobs.
    @Test func aHungJobTimesOutAndThePoolGoesOn() async throws {
        let pool = BlockingPool(threads: 2)
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let readEnd = fds[0]
        let finished = Mutex(false)
        await #expect(throws: BlockingPool.DeadlineExceeded.self) {
            try await pool.run("a read that hangs", deadline: .milliseconds(200)) {
                var byte: UInt8 = 0
                defer { finished.withLock { $0 = true } }
                return read(readEnd, &byte, 1)
            }
        }
        // Given up on while the job was still stuck (nothing was written to the pipe yet): the
        // caller did not wait for it. (No wall-clock bound: the unit tests share two cores.)
        #expect(!finished.withLock { $0 })
        // The other thread answers at once, while the first is still stuck.
        let answer = try await pool.run("a quick one", deadline: .seconds(10)) { 42 }
        #expect(answer == 42)
        // Let the stuck thread go; its late result is dropped.
        var byte: UInt8 = 1
        #expect(write(fds[1], &byte, 1) == 1)
        close(fds[1])
        let errors = await #expect(throws: (any Error).self) {
            try await pool.run("an error", deadline: .seconds(10)) { throw BlockingPool.DeadlineExceeded(name: "x", deadline: .zero) }
        }
        #expect(errors != nil)
    }
}
