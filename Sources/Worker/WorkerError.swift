import Shards

/// Why a worker stopped with an error, in a sentence for the user.
public enum WorkerError: Error, Equatable, CustomStringConvertible {
    /// The model folder holds another model than the run uses.
    case modelMismatch(path: String, expected: [UInt8], found: [UInt8])
    /// The model folder named by the run cannot be read or loaded here.
    case modelUnusable(path: String, reason: String)
    /// A socket could not be set up.
    case socket(String)

    public var description: String {
        switch self {
        case .modelMismatch(let path, let expected, let found):
            "the model at \(path) does not match the run: its config.json has SHA-256 \(SHA256.hex(found)), "
                + "the coordinator expects \(SHA256.hex(expected)); give this worker the same model files as the coordinator"
        case .modelUnusable(let path, let reason):
            "the model at \(path) cannot be used on this worker: \(reason)"
        case .socket(let reason):
            "the worker's socket could not be set up: \(reason)"
        }
    }

    /// Whether the worker should give the unit back and exit (the problem is this worker's,
    /// not the unit's).
    var releasesAndExits: Bool {
        switch self {
        case .modelMismatch, .modelUnusable: true
        case .socket: false
        }
    }
}
