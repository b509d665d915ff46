import CZeroMQ
import Glibc

/// What ``ZMTPClient/wait(timeout:_:)`` reports.
public enum ZMTPEvent: Sendable {
    /// The handshake with the peer is complete (messages sent before it were queued).
    case ready(connection: Int)
    /// One message, all its frames.
    case message(connection: Int, frames: [[UInt8]])
    /// The connection is gone for good: refused for too long, closed by the peer or broken.
    case closed(connection: Int, error: ZMTPError)
}

/// Many ZMTP 3.1 client connections (RFC 23/37, NULL mechanism only) to `tcp://` or `ipc://`
/// endpoints, all on one thread and one epoll: a message costs about one `send` and a share
/// of one `recv`, with none of libzmq's threads, pipes and mailboxes. For programs that play
/// many peers at once (`bench dispatch`'s null workers); a real worker, with one connection,
/// uses libzmq. Not thread-safe: one owner.
///
/// Each connection is a DEALER (by default) that talks to a ROUTER: it sends its greeting at
/// once, READY when the peer's greeting is acceptable, what the owner queued when the peer's
/// READY arrives, and answers PING with PONG. Messages are handed over as they arrive; sends
/// go to the kernel at once, and what it does not take waits for EPOLLOUT.
///
/// Connections start `maxConnecting` at a time: a burst of a thousand SYNs overflows a
/// listener's backlog (libzmq's is 100), and each dropped one costs a second before the kernel
/// sends it again. A refused connect (the peer is not listening yet) is retried every
/// `reconnectInterval` until `connectTimeout`; a connection that breaks after that is reported
/// closed, never reconnected. The TTL in the peer's PINGs is not enforced: an owner that must
/// notice a silent peer times it out itself.
public final class ZMTPClient {
    public let socketType: String
    /// Socket types the peer may be.
    public let peerSocketTypes: [String]
    public let maxMessageSize: Int
    public let connectTimeout: Duration
    public let reconnectInterval: Duration
    /// Connections at most connecting or handshaking at once; the others wait their turn.
    public let maxConnecting: Int
    /// PINGs answered so far, over all connections.
    public private(set) var pingsAnswered = 0
    /// Off only in tests that show what a peer does to a client that stays silent.
    var answersPings = true

    private let epoll: Int32
    private var connections: [Connection] = []
    private var ready = [epoll_event](repeating: epoll_event(), count: 1024)
    /// Closed connections to report, and connections with decoded bytes left over (a handler
    /// threw).
    private var notices: [ZMTPEvent] = []
    private var backlog: [Int] = []
    private var retrying: [Int] = []
    /// Connections not started yet, in order (`queuedHead` is the next), and how many of the
    /// started ones are still connecting or handshaking.
    private var queued: [Int] = []
    private var queuedHead = 0
    private var inFlight = 0
    private var addresses: [String: SocketAddress] = [:]
    private let clock = ContinuousClock()

    public init(
        socketType: String = "DEALER", peerSocketTypes: [String] = ["ROUTER"], maxMessageSize: Int = 1 << 26,
        connectTimeout: Duration = .seconds(30), reconnectInterval: Duration = .milliseconds(100), maxConnecting: Int = 32
    ) throws(ZMTPError) {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw ZMTPError(endpoint: "-", reason: .system(call: "epoll_create1", code: errno)) }
        self.socketType = socketType
        self.peerSocketTypes = peerSocketTypes
        self.maxMessageSize = maxMessageSize
        self.connectTimeout = connectTimeout
        self.reconnectInterval = reconnectInterval
        self.maxConnecting = max(1, maxConnecting)
    }

    deinit {
        for connection in connections where connection.descriptor >= 0 { Glibc.close(connection.descriptor) }
        Glibc.close(epoll)
    }

    public var connectionCount: Int { connections.count }

    /// Ask the kernel for the time each read's data arrived (`SO_TIMESTAMPNS`); set before
    /// connecting.
    public var stampsArrivals = false
    /// SO_TIMESTAMPNS (and SCM_TIMESTAMPNS): the "old" value, whose timespec is 64-bit on 64-bit
    /// Linux; the C macro does not reach Swift.
    private static let timestampOption: Int32 = 35
    private var controlSpace = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))

    /// When the data of connection `index`'s last read arrived, by the kernel's receive
    /// timestamp (CLOCK_REALTIME), if ``stampsArrivals`` and the kernel gave one.
    public func lastArrival(_ index: Int) -> timespec? { connections[index].arrival }

    /// Whether connection `index` has completed its handshake and is open.
    public func isReady(_ index: Int) -> Bool { connections[index].state == .ready }

    /// The peer's ZMTP version, once its greeting has arrived.
    public func peerVersion(_ index: Int) -> (major: UInt8, minor: UInt8)? { connections[index].decoder.peerVersion }

    // MARK: Connecting

    /// Starts a connection to `endpoint` (`tcp://HOST:PORT`, `ipc://PATH`, `ipc://@ABSTRACT`)
    /// and returns its index; messages can be sent at once and wait for the connection.
    public func connect(_ endpoint: String) throws(ZMTPError) -> Int {
        let address: SocketAddress
        if let known = addresses[endpoint] {
            address = known
        } else {
            address = try SocketAddress(endpoint: endpoint)
            addresses[endpoint] = address
        }
        let connection = Connection(endpoint: endpoint, address: address, maxMessageSize: maxMessageSize)
        connection.outbox = ZMTPWire.greeting
        connections.append(connection)
        queued.append(connections.count - 1)
        startQueued()
        return connections.count - 1
    }

    /// Starts queued connections while fewer than `maxConnecting` are in flight.
    private func startQueued() {
        while inFlight < maxConnecting && queuedHead < queued.count {
            let index = queued[queuedHead]
            queuedHead += 1
            guard connections[index].state == .queued else { continue }
            inFlight += 1
            connections[index].since = clock.now
            attempt(index)
        }
        if queuedHead == queued.count && !queued.isEmpty {
            queued = []
            queuedHead = 0
        }
    }

    /// One non-blocking connect; refusals are retried, other failures close the connection.
    private func attempt(_ index: Int) {
        let connection = connections[index]
        connection.state = .connecting
        let descriptor = socket(connection.address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return fail(index, .system(call: "socket", code: errno)) }
        if connection.address.family != AF_UNIX {
            // Small messages go out at once, as libzmq sets it too.
            var on: Int32 = 1
            setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        if stampsArrivals {
            var on: Int32 = 1
            setsockopt(descriptor, SOL_SOCKET, Self.timestampOption, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        connection.descriptor = descriptor
        connection.generation &+= 1
        let status = connection.address.bytes.withUnsafeBytes {
            Glibc.connect(descriptor, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
        }
        let code = errno
        if status == 0 || code == EINPROGRESS {
            watch(index, writable: true, add: true)
            if status == 0 && connection.descriptor >= 0 { connected(index) }
            return
        }
        retryOrFail(index, code: code)
    }

    /// ECONNREFUSED, ENOENT (no socket file yet) and EAGAIN (a Unix listener's backlog is
    /// full) mean "not yet": libzmq's own DEALER retries them too.
    private func retryOrFail(_ index: Int, code: Int32) {
        let connection = connections[index]
        Glibc.close(connection.descriptor)
        connection.descriptor = -1
        guard [ECONNREFUSED, ENOENT, EAGAIN, ETIMEDOUT].contains(code) else { return fail(index, .system(call: "connect", code: code)) }
        let now = clock.now
        guard now - connection.since < connectTimeout else {
            return fail(index, .connectTimedOut(seconds: connectTimeout / .seconds(1), lastCode: code))
        }
        connection.state = .retrying
        connection.retryAt = now + reconnectInterval
        retrying.append(index)
    }

    /// The connect completed (or failed: SO_ERROR says which).
    private func connected(_ index: Int) {
        let connection = connections[index]
        var code: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(connection.descriptor, SOL_SOCKET, SO_ERROR, &code, &size)
        if code != 0 {
            epoll_ctl(epoll, EPOLL_CTL_DEL, connection.descriptor, nil)
            return retryOrFail(index, code: code)
        }
        connection.state = .handshake
        watch(index, writable: false)
        flush(index)
    }

    private func watch(_ index: Int, writable: Bool, add: Bool = false) {
        let connection = connections[index]
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | (writable ? EPOLLOUT.rawValue : 0)
        // The generation tells a new socket of a retried connection from its predecessor.
        event.data.u64 = UInt64(connection.generation) << 32 | UInt64(index)
        connection.watchingWritable = writable
        if epoll_ctl(epoll, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, connection.descriptor, &event) != 0 {
            fail(index, .system(call: "epoll_ctl", code: errno))
        }
    }

    // MARK: Sending

    /// Sends one message (one frame per element); queued until the handshake is complete, or
    /// while the kernel's buffer is full. Throws only if the connection is closed; a connection
    /// that breaks now is reported by the next ``wait(timeout:_:)``.
    public func send(_ index: Int, _ frames: [[UInt8]]) throws(ZMTPError) {
        let connection = connections[index]
        if let error = connection.failure { throw error }
        guard connection.state == .ready else { return Self.encode(frames, to: &connection.early) }
        Self.encode(frames, to: &connection.outbox)
        if !connection.watchingWritable { flush(index) }
    }

    private static func encode(_ frames: [[UInt8]], to out: inout [UInt8]) {
        for (position, frame) in frames.enumerated() {
            ZMTPWire.appendFrame(frame, more: position < frames.count - 1, to: &out)
        }
        if frames.isEmpty { ZMTPWire.appendFrame([], more: false, to: &out) }
    }

    /// Writes what the kernel takes; the rest waits for EPOLLOUT.
    private func flush(_ index: Int) {
        let connection = connections[index]
        while connection.sent < connection.outbox.count {
            let count = connection.outbox.withUnsafeBytes {
                Glibc.send(connection.descriptor, $0.baseAddress! + connection.sent, $0.count - connection.sent, Int32(MSG_NOSIGNAL))
            }
            if count >= 0 {
                connection.sent += count
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN: if !connection.watchingWritable { watch(index, writable: true) }
            default: fail(index, .system(call: "send", code: errno))
            }
            return
        }
        connection.outbox.removeAll(keepingCapacity: true)
        connection.sent = 0
        if connection.watchingWritable { watch(index, writable: false) }
    }

    // MARK: Receiving

    /// Waits up to `timeout` for traffic and hands each event to `handle`, which may send and
    /// close connections. Returns the number of events handled (0 on timeout or signal). If
    /// `handle` throws, the error propagates; the events not yet handed over wait for the next
    /// call.
    @discardableResult
    public func wait(timeout: Duration, _ handle: (ZMTPEvent) throws -> Void) throws -> Int {
        var handled = 0
        handled += try deliverNotices(handle)
        while let index = backlog.popLast() { handled += try dispatch(index, handle) }
        var until = clock.now + timeout
        if !retrying.isEmpty {
            let now = clock.now
            let waiting = retrying
            retrying = []
            for index in waiting {
                guard connections[index].state == .retrying else { continue }
                if connections[index].retryAt <= now { attempt(index) } else { retrying.append(index) }
            }
            for index in retrying where connections[index].state == .retrying { until = min(until, connections[index].retryAt) }
            handled += try deliverNotices(handle)
        }
        let milliseconds = handled > 0 ? 0 : Self.milliseconds(until - clock.now)
        let count = epoll_wait(epoll, &ready, Int32(ready.count), milliseconds)
        if count < 0 {
            if errno == EINTR { return handled }
            throw ZMTPError(endpoint: "-", reason: .system(call: "epoll_wait", code: errno))
        }
        for slot in 0..<Int(count) {
            let event = ready[slot]
            let index = Int(event.data.u64 & 0xFFFF_FFFF)
            let connection = connections[index]
            guard UInt32(event.data.u64 >> 32) == connection.generation, connection.descriptor >= 0 else { continue }
            if connection.state == .connecting {
                connected(index)
                continue
            }
            if event.events & EPOLLOUT.rawValue != 0 { flush(index) }
            if event.events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
                handled += try receive(index, handle)
            }
        }
        handled += try deliverNotices(handle)
        startQueued()
        return handled
    }

    /// Whole milliseconds, rounded up so that a short positive wait does not spin.
    private static func milliseconds(_ duration: Duration) -> Int32 {
        let value = (duration / .milliseconds(1)).rounded(.up)
        return Int32(max(0, min(value, Double(Int32.max))))
    }

    /// One read into the connection's decoder, then its events.
    private func receive(_ index: Int, _ handle: (ZMTPEvent) throws -> Void) throws -> Int {
        let connection = connections[index]
        guard connection.isOpen else { return 0 }
        var code: Int32 = 0
        let count = connection.decoder.fill {
            let count = stampsArrivals ? receiveStamped(connection, $0, $1) : recv(connection.descriptor, $0, $1, 0)
            if count < 0 { code = errno }
            return count
        }
        var handled = try dispatch(index, handle)
        let hungUp: ZMTPError.Reason = connection.state == .handshake ? .closedDuringHandshake : .closedByPeer
        if count == 0 {
            fail(index, hungUp)
        } else if count < 0 && code != EAGAIN && code != EINTR {
            fail(index, code == ECONNRESET ? hungUp : .system(call: "recv", code: code))
        }
        handled += try deliverNotices(handle)
        return handled
    }

    /// `recvmsg` with room for the SCM_TIMESTAMPNS control message, which it keeps.
    private func receiveStamped(_ connection: Connection, _ buffer: UnsafeMutableRawPointer, _ capacity: Int) -> Int {
        // A read without a timestamp must not leave an earlier one standing.
        connection.arrival = nil
        var vector = iovec(iov_base: buffer, iov_len: capacity)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            withUnsafeMutableBytes(of: &controlSpace) { control in
                var message = msghdr()
                message.msg_iov = vectorPointer
                message.msg_iovlen = 1
                message.msg_control = control.baseAddress
                message.msg_controllen = control.count
                let count = recvmsg(connection.descriptor, &message, 0)
                guard count > 0 else { return count }
                // cmsghdr: length (size_t), level, type (Int32 each), then data aligned to size_t.
                var offset = 0
                let headerSize = MemoryLayout<Int>.size + 8
                while offset + headerSize <= message.msg_controllen {
                    let length = control.load(fromByteOffset: offset, as: Int.self)
                    let level = control.load(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
                    let type = control.load(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
                    guard length >= headerSize else { break }
                    if level == SOL_SOCKET && type == Self.timestampOption && length >= headerSize + MemoryLayout<timespec>.size {
                        connection.arrival = control.loadUnaligned(fromByteOffset: offset + headerSize, as: timespec.self)
                    }
                    offset += (length + 7) & ~7
                }
                return count
            }
        }
    }

    /// Hands over every complete event in the decoder; answers PINGs itself.
    private func dispatch(_ index: Int, _ handle: (ZMTPEvent) throws -> Void) throws -> Int {
        let connection = connections[index]
        var handled = 0
        while connection.isOpen {
            let event: ZMTPDecoder.Event?
            do {
                event = try connection.decoder.next()
            } catch {
                fail(index, error.reason)
                break
            }
            guard let event else { break }
            switch event {
            case .greeting:
                ZMTPWire.appendReady(socketType: socketType, identity: [], to: &connection.outbox)
                if !connection.watchingWritable { flush(index) }
            case .ready(let peerType, _):
                guard peerSocketTypes.contains(peerType) else {
                    fail(index, .incompatibleSocketType(peer: peerType, expected: peerSocketTypes))
                    break
                }
                // libzmq takes messages only once it has sent its READY too (a message
                // right behind our READY is a protocol error to it), so they wait for the
                // peer's READY.
                connection.state = .ready
                inFlight -= 1
                connection.outbox += connection.early
                connection.early = []
                if !connection.watchingWritable { flush(index) }
                handled += 1
                try handleOrKeep(index, .ready(connection: index), handle)
            case .message(let frames):
                handled += 1
                try handleOrKeep(index, .message(connection: index, frames: frames), handle)
            case .ping(let context):
                guard answersPings else { continue }
                ZMTPWire.appendCommand("PONG", data: context, to: &connection.outbox)
                pingsAnswered += 1
                if !connection.watchingWritable { flush(index) }
            }
        }
        return handled
    }

    /// Calls `handle`; if it throws, the connection's remaining events wait for the next wait.
    private func handleOrKeep(_ index: Int, _ event: ZMTPEvent, _ handle: (ZMTPEvent) throws -> Void) throws {
        do {
            try handle(event)
        } catch {
            backlog.append(index)
            throw error
        }
    }

    private func deliverNotices(_ handle: (ZMTPEvent) throws -> Void) throws -> Int {
        var handled = 0
        while !notices.isEmpty {
            let notice = notices.removeFirst()
            handled += 1
            try handle(notice)
        }
        return handled
    }

    // MARK: Closing

    /// Closes connection `index` at once (unsent messages are dropped); no event follows.
    public func close(_ index: Int) {
        let connection = connections[index]
        if connection.state == .closed { return }
        if connection.isInFlight { inFlight -= 1 }
        release(connection)
        connection.state = .closed
        connection.failure = ZMTPError(endpoint: connection.endpoint, reason: .closed)
    }

    private func fail(_ index: Int, _ reason: ZMTPError.Reason) {
        let connection = connections[index]
        if connection.state == .closed { return }
        if connection.isInFlight { inFlight -= 1 }
        release(connection)
        let error = ZMTPError(endpoint: connection.endpoint, reason: reason)
        connection.state = .closed
        connection.failure = error
        notices.append(.closed(connection: index, error: error))
    }

    private func release(_ connection: Connection) {
        if connection.descriptor >= 0 {
            epoll_ctl(epoll, EPOLL_CTL_DEL, connection.descriptor, nil)
            Glibc.close(connection.descriptor)
            connection.descriptor = -1
        }
        connection.outbox = []
        connection.early = []
        connection.sent = 0
    }
}

/// One connection's socket, buffers and handshake state.
private final class Connection {
    enum State {
        /// Waiting for its turn to connect.
        case queued
        /// Waiting until `retryAt` to connect again.
        case retrying
        case connecting
        /// Connected; the peer's greeting or READY has not arrived yet.
        case handshake
        case ready
        /// For good; `failure` says why.
        case closed
    }

    let endpoint: String
    let address: SocketAddress
    let decoder: ZMTPDecoder
    /// When connecting began, for the connect timeout.
    var since = ContinuousClock.now
    var state = State.queued
    var retryAt = ContinuousClock.now
    var failure: ZMTPError?
    var descriptor: Int32 = -1
    var generation: UInt32 = 0
    /// The kernel's receive time of the last read, with ``ZMTPClient/stampsArrivals``.
    var arrival: timespec?
    /// Encoded bytes; `sent` of them are with the kernel already.
    var outbox: [UInt8] = []
    /// Messages sent before the handshake completed, encoded.
    var early: [UInt8] = []
    var sent = 0
    var watchingWritable = false

    init(endpoint: String, address: SocketAddress, maxMessageSize: Int) {
        self.endpoint = endpoint
        self.address = address
        decoder = ZMTPDecoder(endpoint: endpoint, maxMessageSize: maxMessageSize)
    }

    var isOpen: Bool { state == .handshake || state == .ready }

    /// Started and not yet ready or closed.
    var isInFlight: Bool {
        switch state {
        case .connecting, .handshake, .retrying: true
        case .queued, .ready, .closed: false
        }
    }
}

/// A `sockaddr_in`/`sockaddr_in6`/`sockaddr_un` as bytes, parsed from a ZeroMQ endpoint.
private struct SocketAddress {
    var family: Int32
    var bytes: [UInt8]

    init(endpoint: String) throws(ZMTPError) {
        func invalid(_ why: String) -> ZMTPError { ZMTPError(endpoint: endpoint, reason: .invalidEndpoint(why)) }
        if endpoint.hasPrefix("ipc://") {
            var path = Array(endpoint.utf8.dropFirst(6))
            // libzmq's "@name" is Linux's abstract namespace: a leading NUL, no terminator.
            let abstract = path.first == UInt8(ascii: "@")
            if abstract { path[0] = 0 }
            var address = sockaddr_un()
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            guard !path.isEmpty, path.count < capacity else { throw invalid("the socket path must be 1 to \(capacity - 1) bytes") }
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
            let length = (MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2) + path.count + (abstract ? 0 : 1)
            family = AF_UNIX
            bytes = withUnsafeBytes(of: address) { Array($0.prefix(length)) }
            return
        }
        guard endpoint.hasPrefix("tcp://") else { throw invalid("only tcp:// and ipc:// are supported") }
        let rest = endpoint.dropFirst(6)
        guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]), port > 0 else {
            throw invalid("the address has no port")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        // IPv4 unless the host is an IPv6 literal, as libzmq does without ZMQ_IPV6.
        hints.ai_family = host.contains(":") ? AF_INET6 : AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        defer { if let list { freeaddrinfo(list) } }
        guard status == 0, let first = list, let address = first.pointee.ai_addr else {
            throw invalid("cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        family = first.pointee.ai_family
        bytes = Array(UnsafeRawBufferPointer(start: address, count: Int(first.pointee.ai_addrlen)))
    }
}
