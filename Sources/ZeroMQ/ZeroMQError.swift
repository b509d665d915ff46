import CZeroMQ

/// A failed libzmq call: which operation, on what, and libzmq's own explanation.
public struct ZeroMQError: Error, Equatable, CustomStringConvertible {
    /// The call that failed, with its argument where that helps (`zmq_bind(tcp://*:5555)`).
    public let operation: String
    /// The `errno` value libzmq reported.
    public let code: Int32

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// Captures `zmq_errno()` right after a failed call.
    static func last(_ operation: String) -> ZeroMQError {
        ZeroMQError(operation: operation, code: zmq_errno())
    }

    /// `zmq_strerror` of the code.
    public var reason: String { String(cString: zmq_strerror(code)) }

    /// The socket would have blocked (send high-water mark reached, or nothing to receive).
    public var wouldBlock: Bool { code == EAGAIN }

    /// The context was terminated while the call was in progress.
    public var contextTerminated: Bool { code == ETERM }

    public var description: String { "\(operation) failed: \(reason) (errno \(code))" }
}

/// Version and build facts of the linked libzmq.
public enum ZeroMQLibrary {
    /// `major.minor.patch` of the libzmq actually loaded.
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    /// Whether libzmq was built with CURVE security (Debian builds it with libsodium).
    public static var hasCurve: Bool { zmq_has("curve") != 0 }
}
