import CZeroMQ
import Glibc

/// Many sockets watched through their ZMQ_FD descriptors with one epoll: a wait costs what is
/// ready, not the number of sockets as `zmq_poll` does. A socket reported here MAY have
/// messages (or none: the descriptor also signals other events); receive from it until
/// nothing is left, or it will not be reported again.
public final class ZeroMQEventSet {
    private let descriptor: Int32
    private var ready = [epoll_event](repeating: epoll_event(), count: 256)

    public init() throws(ZeroMQError) {
        descriptor = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard descriptor >= 0 else { throw ZeroMQError(operation: "epoll_create1", code: errno) }
    }

    deinit { close(descriptor) }

    /// Watches `socket`; `wait` reports it as `tag` (0 … 2³²−1).
    public func add(_ socket: ZeroMQSocket, tag: Int) throws(ZeroMQError) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u32 = UInt32(tag)
        guard epoll_ctl(descriptor, EPOLL_CTL_ADD, try socket.eventDescriptor(), &event) == 0 else {
            throw ZeroMQError(operation: "epoll_ctl", code: errno)
        }
    }

    /// Waits up to `timeout` and returns the tags of the sockets that may have messages
    /// (none on timeout or signal).
    public func wait(timeout: Duration) throws(ZeroMQError) -> [Int] {
        let milliseconds = Int32(clamping: max(0, Int((timeout / .milliseconds(1)).rounded(.up))))
        let count = epoll_wait(descriptor, &ready, Int32(ready.count), milliseconds)
        if count < 0 {
            if errno == EINTR { return [] }
            throw ZeroMQError(operation: "epoll_wait", code: errno)
        }
        return (0..<Int(count)).map { Int(ready[$0].data.u32) }
    }
}
