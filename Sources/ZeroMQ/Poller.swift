import CZeroMQ

/// What a poll waits for.
public struct PollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
    public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// Waits on several sockets (and plain file descriptors) at once (`zmq_poll`).
public struct ZeroMQPoller {
    /// nil for a plain descriptor.
    private var sockets: [ZeroMQSocket?] = []
    private var items: [zmq_pollitem_t] = []

    public init() {}

    /// Adds a socket; its index in the poll result is the order of `add` calls.
    public mutating func add(_ socket: ZeroMQSocket, events: PollEvents = .readable) {
        sockets.append(socket)
        items.append(zmq_pollitem_t(socket: socket.handle, fd: 0, events: events.rawValue, revents: 0))
    }

    /// Adds a plain file descriptor (an eventfd, a pipe), which the caller keeps open.
    public mutating func add(descriptor: Int32, events: PollEvents = .readable) {
        sockets.append(nil)
        items.append(zmq_pollitem_t(socket: nil, fd: descriptor, events: events.rawValue, revents: 0))
    }

    /// Indices of the sockets that are ready. Empty on timeout or when a signal
    /// interrupted the wait. A nil timeout waits forever.
    public mutating func poll(timeout: Duration?) throws(ZeroMQError) -> [Int] {
        for index in items.indices {
            items[index].revents = 0
            guard let socket = sockets[index] else { continue }
            items[index].socket = socket.handle
            if socket.handle == nil {
                throw ZeroMQError(operation: "zmq_poll(closed \(socket.kind) socket)", code: ENOTSOCK)
            }
        }
        let milliseconds = timeout.map { Int($0.milliseconds) } ?? -1
        let count = items.withUnsafeMutableBufferPointer {
            zmq_poll($0.baseAddress, Int32($0.count), milliseconds)
        }
        if count < 0 {
            if zmq_errno() == EINTR { return [] }
            throw ZeroMQError.last("zmq_poll")
        }
        return items.indices.filter { items[$0].revents != 0 }
    }

    /// Whether the socket at `index` was ready in the last poll for any of `events`.
    public func isReady(_ index: Int, for events: PollEvents = .readable) -> Bool {
        items[index].revents & events.rawValue != 0
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so that a tiny positive timeout never becomes "poll once".
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        let sub = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return max(0, seconds * 1000 + sub)
    }
}
