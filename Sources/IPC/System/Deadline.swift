/// Runs `operation`, and if it has not finished after `timeout`, runs `onExpiry` (which must make
/// the operation end: kill the child it waits for, so that its wait or read returns), then goes
/// on waiting for the operation. Structured: both run as children of one task group, and
/// neither outlives the call.
///
/// A cancelled caller expires at once.
///
///     let line = await withDeadline(.seconds(15), onExpiry: { child.signal(SIGKILL) }) {
///         await OutputReader.firstLine(from: fd)
///     }
public func withDeadline<T: Sendable>(
    _ timeout: Duration,
    onExpiry: @escaping @Sendable () async -> Void,
    operation: @escaping @Sendable () async -> T
) async -> T {
    let finished = OneShot<Void>()
    return await withTaskGroup(of: T?.self) { group in
        group.addTask {
            let value = await operation()
            finished.set(())
            return value
        }
        group.addTask {
            // Woken early either because the operation finished (nothing to do) or because the
            // caller was cancelled (end the operation now).
            _ = try? await Task.sleep(for: timeout)
            if finished.value == nil { await onExpiry() }
            return nil
        }
        var result: T?
        while let next = await group.next() {
            if let next {
                result = next
                group.cancelAll()
            }
        }
        return result!  // the operation's task is the only one that returns a value, and it always returns
    }
}
