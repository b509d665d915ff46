import CZeroMQ

/// A libzmq socket. Not thread-safe: one owner uses it, as libzmq requires.
public final class ZeroMQSocket {
    /// The context outlives its sockets, so `zmq_ctx_term` never waits on an open one.
    public let context: ZeroMQContext
    public let kind: SocketKind
    private(set) var handle: UnsafeMutableRawPointer?
    /// Reused by ``receiveFramesIfReady()``; libzmq needs a message at a stable address.
    private let scratch: UnsafeMutablePointer<zmq_msg_t> = {
        let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        zmq_msg_init(message)
        return message
    }()

    init(context: ZeroMQContext, kind: SocketKind) throws(ZeroMQError) {
        guard let handle = zmq_socket(context.handle, kind.rawValue) else {
            throw ZeroMQError.last("zmq_socket(\(kind))")
        }
        self.context = context
        self.kind = kind
        self.handle = handle
    }

    deinit {
        close()
        zmq_msg_close(scratch)
        scratch.deallocate()
    }

    /// Closes the socket. Idempotent. Unsent messages wait up to the linger period.
    public func close() {
        if let handle {
            zmq_close(handle)
            self.handle = nil
        }
    }

    func open(_ operation: @autoclosure () -> String) throws(ZeroMQError) -> UnsafeMutableRawPointer {
        guard let handle else { throw ZeroMQError(operation: operation(), code: ENOTSOCK) }
        return handle
    }

    // MARK: Endpoints

    /// Binds and returns the endpoint actually bound: `tcp://127.0.0.1:0` comes back
    /// with the port the OS chose.
    @discardableResult
    public func bind(_ endpoint: String) throws(ZeroMQError) -> String {
        let handle = try open("zmq_bind(\(endpoint))")
        guard zmq_bind(handle, endpoint) == 0 else { throw ZeroMQError.last("zmq_bind(\(endpoint))") }
        return try lastEndpoint()
    }

    public func connect(_ endpoint: String) throws(ZeroMQError) {
        let handle = try open("zmq_connect(\(endpoint))")
        guard zmq_connect(handle, endpoint) == 0 else { throw ZeroMQError.last("zmq_connect(\(endpoint))") }
    }

    public func disconnect(_ endpoint: String) throws(ZeroMQError) {
        let handle = try open("zmq_disconnect(\(endpoint))")
        guard zmq_disconnect(handle, endpoint) == 0 else { throw ZeroMQError.last("zmq_disconnect(\(endpoint))") }
    }

    /// The endpoint of the last bind (`ZMQ_LAST_ENDPOINT`).
    public func lastEndpoint() throws(ZeroMQError) -> String {
        let bytes = try bytesOption(ZMQ_LAST_ENDPOINT, name: "ZMQ_LAST_ENDPOINT", capacity: 1024)
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    // MARK: Sending

    /// Sends one frame, copying `bytes`. With `more`, further frames of the same message follow.
    /// Throws ``ZeroMQError`` with ``ZeroMQError/wouldBlock`` when `dontWait` (or the send
    /// timeout) hits the high-water mark.
    public func send(_ bytes: UnsafeRawBufferPointer, more: Bool = false, dontWait: Bool = false) throws(ZeroMQError) {
        let handle = try open("zmq_send")
        let flags = (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
        while zmq_send(handle, bytes.baseAddress, bytes.count, flags) < 0 {
            if zmq_errno() != EINTR { throw ZeroMQError.last("zmq_send") }
        }
    }

    public func send(_ bytes: [UInt8], more: Bool = false, dontWait: Bool = false) throws(ZeroMQError) {
        let result: Result<Void, ZeroMQError> = bytes.withUnsafeBytes { buffer in
            do throws(ZeroMQError) { try send(buffer, more: more, dontWait: dontWait); return .success(()) }
            catch { return .failure(error) }
        }
        try result.get()
    }

    /// Sends a message without copying its payload; the message is left empty.
    public func send(_ message: ZeroMQMessage, more: Bool = false, dontWait: Bool = false) throws(ZeroMQError) {
        let handle = try open("zmq_msg_send")
        let flags = (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
        while zmq_msg_send(message.pointer, handle, flags) < 0 {
            if zmq_errno() != EINTR { throw ZeroMQError.last("zmq_msg_send") }
        }
    }

    /// Sends all frames as one multipart message (delivered all or nothing).
    public func send(multipart frames: [[UInt8]], dontWait: Bool = false) throws(ZeroMQError) {
        for (index, frame) in frames.enumerated() {
            try send(frame, more: index < frames.count - 1, dontWait: dontWait && index == 0)
        }
    }

    /// On a ROUTER: sends `frames` to the peer `routingID` as one message, without building a
    /// second array for the envelope. Only the routing frame can fail (ROUTER_MANDATORY, or a
    /// full queue: it does not wait); the rest then goes with it.
    public func send(_ frames: [[UInt8]], routedTo routingID: RoutingID) throws(ZeroMQError) {
        let routed: Result<Void, ZeroMQError> = routingID.withUnsafeBytes { bytes in
            do throws(ZeroMQError) { try send(bytes, more: true, dontWait: true); return .success(()) }
            catch { return .failure(error) }
        }
        try routed.get()
        for index in frames.indices { try send(frames[index], more: index < frames.count - 1) }
    }

    /// Sends message frames without copying their payloads.
    public func send(multipart frames: [ZeroMQMessage], dontWait: Bool = false) throws(ZeroMQError) {
        for (index, frame) in frames.enumerated() {
            try send(frame, more: index < frames.count - 1, dontWait: dontWait && index == 0)
        }
    }

    // MARK: Receiving

    /// Receives one frame. Waits up to `timeout` (forever when nil) and returns nil if
    /// nothing arrived, or if a signal interrupted the wait, so callers can check their
    /// shutdown flags and loop.
    public func receive(timeout: Duration? = nil) throws(ZeroMQError) -> ZeroMQMessage? {
        let handle = try open("zmq_msg_recv")
        if let timeout, try !poll(for: .readable, timeout: timeout) { return nil }
        let message = ZeroMQMessage()
        while zmq_msg_recv(message.pointer, handle, 0) < 0 {
            if zmq_errno() != EINTR { throw ZeroMQError.last("zmq_msg_recv") }
        }
        return message
    }

    /// Receives every frame of the next multipart message (libzmq delivers them together).
    public func receiveMultipart(timeout: Duration? = nil) throws(ZeroMQError) -> [ZeroMQMessage]? {
        guard let first = try receive(timeout: timeout) else { return nil }
        var frames = [first]
        while frames[frames.count - 1].hasMore {
            guard let next = try receive() else { break }
            frames.append(next)
        }
        return frames
    }

    /// The next multipart message if one is waiting, else nil; never blocks. Cheaper than
    /// `receiveMultipart(timeout: .zero)` in a loop that drains a busy socket.
    public func receiveMultipartIfReady() throws(ZeroMQError) -> [ZeroMQMessage]? {
        let handle = try open("zmq_msg_recv")
        let first = ZeroMQMessage()
        while zmq_msg_recv(first.pointer, handle, ZMQ_DONTWAIT) < 0 {
            let code = zmq_errno()
            if code == EAGAIN { return nil }
            if code != EINTR { throw ZeroMQError.last("zmq_msg_recv") }
        }
        var frames = [first]
        while frames[frames.count - 1].hasMore {
            guard let next = try receive() else { break }
            frames.append(next)
        }
        return frames
    }

    /// Receives every frame of the next multipart message as bytes, if one is waiting, else
    /// nil. One copy per frame and no message objects: for loops that handle many small
    /// messages.
    public func receiveFramesIfReady() throws(ZeroMQError) -> [[UInt8]]? {
        let handle = try open("zmq_msg_recv")
        guard try receiveIntoScratch(handle, dontWait: true) else { return nil }
        // Routing id, protocol, command, body: room for the usual four at once.
        var frames: [[UInt8]] = []
        frames.reserveCapacity(4)
        frames.append([UInt8](scratchBytes))
        try receiveRestOfMessage(handle, into: &frames)
        return frames
    }

    /// On a ROUTER: the next message if one is waiting, split into the peer's routing id and
    /// the frames after it (as ``receiveFramesIfReady()``; the routing id is no array). A frame
    /// equal to one in `shared` (a protocol header, a command byte) is that array, not a copy:
    /// no allocation for the frames most messages repeat.
    public func receiveRoutedIfReady(shared: [[UInt8]] = []) throws(ZeroMQError) -> (routingID: RoutingID, frames: [[UInt8]])? {
        let handle = try open("zmq_msg_recv")
        guard try receiveIntoScratch(handle, dontWait: true) else { return nil }
        let routingID = RoutingID(scratchBytes)
        // Protocol, command, body: room for the usual three at once.
        var frames: [[UInt8]] = []
        frames.reserveCapacity(3)
        try receiveRestOfMessage(handle, into: &frames, shared: shared)
        return (routingID, frames)
    }

    /// Receives the next frame into `scratch`; false if none is waiting (only with `dontWait`).
    private func receiveIntoScratch(_ handle: UnsafeMutableRawPointer, dontWait: Bool) throws(ZeroMQError) -> Bool {
        while zmq_msg_recv(scratch, handle, dontWait ? ZMQ_DONTWAIT : 0) < 0 {
            let code = zmq_errno()
            if code == EAGAIN && dontWait { return false }
            if code != EINTR { throw ZeroMQError.last("zmq_msg_recv") }
        }
        return true
    }

    /// Copies of the frames that follow the one in `scratch` in its message (libzmq delivers
    /// them together).
    private func receiveRestOfMessage(_ handle: UnsafeMutableRawPointer, into frames: inout [[UInt8]], shared: [[UInt8]] = []) throws(ZeroMQError) {
        while zmq_msg_more(scratch) != 0 {
            _ = try receiveIntoScratch(handle, dontWait: false)
            let bytes = scratchBytes
            if let same = shared.first(where: { $0.count == bytes.count && $0.withUnsafeBytes { $0.elementsEqual(bytes) } }) {
                frames.append(same)
            } else {
                frames.append([UInt8](bytes))
            }
        }
    }

    private var scratchBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: zmq_msg_data(scratch), count: zmq_msg_size(scratch)) }

    /// Waits until the socket is ready for `events`; false on timeout or signal.
    public func poll(for events: PollEvents, timeout: Duration) throws(ZeroMQError) -> Bool {
        var poller = ZeroMQPoller()
        poller.add(self, events: events)
        return try !poller.poll(timeout: timeout).isEmpty
    }
}
