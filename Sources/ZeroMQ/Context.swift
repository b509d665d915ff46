import CZeroMQ

/// A libzmq context. Thread-safe; sockets keep their context alive.
public final class ZeroMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// - Parameter ioThreads: libzmq I/O threads; one is plenty below ~1 GB/s per process.
    public init(ioThreads: Int32 = 1) throws(ZeroMQError) {
        guard let handle = zmq_ctx_new() else { throw ZeroMQError.last("zmq_ctx_new") }
        self.handle = handle
        if ioThreads != 1, zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads) != 0 {
            let error = ZeroMQError.last("zmq_ctx_set(ZMQ_IO_THREADS)")
            zmq_ctx_term(handle)
            throw error
        }
    }

    /// Makes blocking calls on every socket of this context return `ETERM`, so that owner
    /// threads can notice and close their sockets. Safe to call from any thread.
    public func shutdown() {
        zmq_ctx_shutdown(handle)
    }

    deinit {
        // Every socket holds a strong reference to us, so all are closed by now and
        // zmq_ctx_term cannot block on them.
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// Opens a socket of the given kind.
    public func socket(_ kind: SocketKind) throws(ZeroMQError) -> ZeroMQSocket {
        try ZeroMQSocket(context: self, kind: kind)
    }
}

/// The socket patterns actcluster uses.
public enum SocketKind: Sendable, CustomStringConvertible {
    case router, dealer, push, pull, request, reply

    var rawValue: Int32 {
        switch self {
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        case .request: ZMQ_REQ
        case .reply: ZMQ_REP
        }
    }

    public var description: String {
        switch self {
        case .router: "ROUTER"
        case .dealer: "DEALER"
        case .push: "PUSH"
        case .pull: "PULL"
        case .request: "REQ"
        case .reply: "REP"
        }
    }
}
