/// What goes wrong with a replica; every message names the object, the remote or the file.
enum ReplicaError: Error, CustomStringConvertible, Equatable {
    /// The object was encrypted with another key than the one in `keyFile`.
    case wrongKey(object: String, keyFile: String)
    /// The object does not open: altered, truncated, or another object under this name.
    case corrupt(object: String, detail: String)
    /// rclone failed or did not finish; `detail` holds the start of its stderr.
    case remote(operation: String, target: String, detail: String)
    case io(String)

    var description: String {
        switch self {
        case .wrongKey(let object, let keyFile):
            "replica object \(object) was encrypted with another key than the one in \(keyFile): put back the key file these replicas were written with"
        case .corrupt(let object, let detail):
            "replica object \(object) cannot be trusted: \(detail)"
        case .remote(let operation, let target, let detail):
            "rclone \(operation) \(target) failed: \(detail)"
        case .io(let detail):
            detail
        }
    }
}
