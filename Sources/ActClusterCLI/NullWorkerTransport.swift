import ArgumentParser
import Glibc
import ZeroMQ

/// How `bench dispatch`'s null workers reach the coordinator: one connection per worker, all
/// played by one thread. The bench's logic is the same over either implementation.
protocol NullWorkerTransport: AnyObject {
    /// Sends one message on worker `index`'s connection without blocking.
    func send(_ index: Int, _ frames: [[UInt8]]) throws
    /// Waits up to `timeout` and hands every message that arrived to `deliver`, which may
    /// send. Returns whether anything arrived.
    func wait(timeout: Duration, _ deliver: (Int, [[UInt8]]) throws -> Void) throws -> Bool
    /// Hands over messages already waiting for worker `index` that `wait` might not report.
    func drain(_ index: Int, _ deliver: (Int, [[UInt8]]) throws -> Void) throws
    /// When the message just handed over for worker `index` reached this machine's socket, as
    /// an instant of `ContinuousClock` (`now` is its reading at the call).
    func arrival(_ index: Int, now: ContinuousClock.Instant) -> ContinuousClock.Instant
    /// Worker `index` got SHUTDOWN: its connection may close from now on.
    func finish(_ index: Int)
    func close()
}

/// The null workers' transport, by `--null-workers`.
enum NullWorkerKind: String, CaseIterable, Sendable, ExpressibleByArgument {
    /// Our ZMTP client: plain sockets and one epoll, a couple of syscalls per unit.
    case zmtp
    /// A libzmq DEALER socket per worker, as real workers use (its CPU cost per unit is about
    /// the coordinator's own, so on a small machine it caps what the bench can show).
    case zmq

    func connect(workers: Int, to endpoint: String, maxMessageSize: Int64) throws -> NullWorkerTransport {
        switch self {
        case .zmtp: try ZMTPNullWorkers(workers: workers, endpoint: endpoint, maxMessageSize: maxMessageSize)
        case .zmq: try ZeroMQNullWorkers(workers: workers, endpoint: endpoint, maxMessageSize: maxMessageSize)
        }
    }
}

/// One libzmq DEALER per worker. One epoll over the sockets' ZMQ_FDs finds those with
/// messages, so a pass costs what arrived, not the number of sockets (zmq_poll over a
/// thousand sockets would cost more than the coordinator's work).
final class ZeroMQNullWorkers: NullWorkerTransport {
    private let context: ZeroMQContext
    private var sockets: [ZeroMQSocket] = []
    private let events: ZeroMQEventSet

    init(workers: Int, endpoint: String, maxMessageSize: Int64) throws {
        context = try ZeroMQContext()
        events = try ZeroMQEventSet()
        for index in 0..<workers {
            let socket = try context.socket(.dealer)
            try socket.configure(linger: .zero, maxMessageSize: maxMessageSize)
            try socket.connect(endpoint)
            try events.add(socket, tag: index)
            sockets.append(socket)
        }
    }

    func send(_ index: Int, _ frames: [[UInt8]]) throws {
        try sockets[index].send(multipart: frames, dontWait: true)
    }

    func wait(timeout: Duration, _ deliver: (Int, [[UInt8]]) throws -> Void) throws -> Bool {
        let ready = try events.wait(timeout: timeout)
        for index in ready { try drain(index, deliver) }
        return !ready.isEmpty
    }

    /// ZMQ_FD is edge-triggered and a send can consume the signal of a message that arrived
    /// meanwhile, so callers drain a socket after sending to it outside `deliver`.
    func drain(_ index: Int, _ deliver: (Int, [[UInt8]]) throws -> Void) throws {
        while let frames = try sockets[index].receiveFramesIfReady() { try deliver(index, frames) }
    }

    func arrival(_ index: Int, now: ContinuousClock.Instant) -> ContinuousClock.Instant { now }

    func finish(_ index: Int) {}

    func close() {
        for socket in sockets { socket.close() }
    }
}

/// All workers' connections in one ``ZMTPClient``. Its epoll is level-triggered over plain
/// sockets, so nothing is ever left unreported and `drain` has nothing to do.
final class ZMTPNullWorkers: NullWorkerTransport {
    private let client: ZMTPClient
    private var finished: [Bool]

    init(workers: Int, endpoint: String, maxMessageSize: Int64) throws {
        client = try ZMTPClient(maxMessageSize: Int(maxMessageSize))
        client.stampsArrivals = true
        finished = [Bool](repeating: false, count: workers)
        for _ in 0..<workers { _ = try client.connect(endpoint) }
    }

    func send(_ index: Int, _ frames: [[UInt8]]) throws {
        try client.send(index, frames)
    }

    func wait(timeout: Duration, _ deliver: (Int, [[UInt8]]) throws -> Void) throws -> Bool {
        var arrived = false
        try client.wait(timeout: timeout) { event in
            switch event {
            case .ready: break
            case .message(let index, let frames):
                arrived = true
                try deliver(index, frames)
            case .closed(let index, let error):
                // The coordinator closes every connection when it exits after the SHUTDOWNs.
                if !finished[index] { throw error }
            }
        }
        return arrived
    }

    func drain(_ index: Int, _ deliver: (Int, [[UInt8]]) throws -> Void) throws {}

    func arrival(_ index: Int, now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let stamp = client.lastArrival(index) else { return now }
        var real = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        let age = Duration.seconds(real.tv_sec - stamp.tv_sec) + .nanoseconds(real.tv_nsec - stamp.tv_nsec)
        // A stamp in the future, or absurdly old, is a clock step: time the read instead.
        return age >= .zero && age < .seconds(1) ? now - age : now
    }

    func finish(_ index: Int) { finished[index] = true }

    func close() {
        for index in 0..<client.connectionCount { client.close(index) }
    }
}
