import CZeroMQ

/// Integer socket options, named for what they do.
public enum IntegerOption: Sendable {
    /// Milliseconds unsent messages survive `close` (-1 forever, 0 discard).
    case linger
    case sendHighWaterMark
    case receiveHighWaterMark
    /// ZMTP heartbeats: PING every interval (ms); the peer is dead after timeout (ms)
    /// without traffic; ttl (ms) is what we ask the peer to allow us.
    case heartbeatInterval
    case heartbeatTimeout
    case heartbeatTTL
    case sendTimeout
    case receiveTimeout
    /// ROUTER: fail sends to unknown identities instead of dropping them.
    case routerMandatory
    /// Queue only on completed connections.
    case immediate
    case ipv6
    case reconnectInterval
    case reconnectIntervalMax
    case handshakeInterval
    /// TCP keepalive (1 on, 0 off, -1 the system's default), and its probes: idle seconds
    /// before the first, seconds between them, how many go unanswered before the kernel drops
    /// the connection.
    case tcpKeepalive
    case tcpKeepaliveIdle
    case tcpKeepaliveInterval
    case tcpKeepaliveCount

    var code: Int32 {
        switch self {
        case .linger: ZMQ_LINGER
        case .sendHighWaterMark: ZMQ_SNDHWM
        case .receiveHighWaterMark: ZMQ_RCVHWM
        case .heartbeatInterval: ZMQ_HEARTBEAT_IVL
        case .heartbeatTimeout: ZMQ_HEARTBEAT_TIMEOUT
        case .heartbeatTTL: ZMQ_HEARTBEAT_TTL
        case .sendTimeout: ZMQ_SNDTIMEO
        case .receiveTimeout: ZMQ_RCVTIMEO
        case .routerMandatory: ZMQ_ROUTER_MANDATORY
        case .immediate: ZMQ_IMMEDIATE
        case .ipv6: ZMQ_IPV6
        case .reconnectInterval: ZMQ_RECONNECT_IVL
        case .reconnectIntervalMax: ZMQ_RECONNECT_IVL_MAX
        case .handshakeInterval: ZMQ_HANDSHAKE_IVL
        case .tcpKeepalive: ZMQ_TCP_KEEPALIVE
        case .tcpKeepaliveIdle: ZMQ_TCP_KEEPALIVE_IDLE
        case .tcpKeepaliveInterval: ZMQ_TCP_KEEPALIVE_INTVL
        case .tcpKeepaliveCount: ZMQ_TCP_KEEPALIVE_CNT
        }
    }
}

extension ZeroMQSocket {
    public func set(_ option: IntegerOption, _ value: Int32) throws(ZeroMQError) {
        try setInt32(option.code, name: "\(option)", value)
    }

    func setInt32(_ code: Int32, name: String, _ value: Int32) throws(ZeroMQError) {
        var value = value
        let handle = try open("zmq_setsockopt(\(name))")
        guard zmq_setsockopt(handle, code, &value, MemoryLayout<Int32>.size) == 0 else {
            throw ZeroMQError.last("zmq_setsockopt(\(name), \(value))")
        }
    }

    public func get(_ option: IntegerOption) throws(ZeroMQError) -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        let handle = try open("zmq_getsockopt(\(option))")
        guard zmq_getsockopt(handle, option.code, &value, &size) == 0 else {
            throw ZeroMQError.last("zmq_getsockopt(\(option))")
        }
        return value
    }

    /// ZMQ_FD: a descriptor that turns readable when the socket may have something to
    /// receive, so one `epoll` can watch thousands of sockets. It only signals a change:
    /// receive until nothing is left before waiting on it again.
    public func eventDescriptor() throws(ZeroMQError) -> Int32 {
        var value: Int32 = -1
        var size = MemoryLayout<Int32>.size
        let handle = try open("zmq_getsockopt(ZMQ_FD)")
        guard zmq_getsockopt(handle, ZMQ_FD, &value, &size) == 0 else { throw ZeroMQError.last("zmq_getsockopt(ZMQ_FD)") }
        return value
    }

    /// Largest inbound message accepted; a peer that sends more is disconnected.
    /// -1 means no limit.
    public func setMaxMessageSize(_ bytes: Int64) throws(ZeroMQError) {
        var value = bytes
        let handle = try open("zmq_setsockopt(ZMQ_MAXMSGSIZE)")
        guard zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size) == 0 else {
            throw ZeroMQError.last("zmq_setsockopt(ZMQ_MAXMSGSIZE, \(bytes))")
        }
    }

    /// The identity a ROUTER peer sees for this socket (1 to 255 bytes, not starting with 0).
    public func setRoutingID(_ id: [UInt8]) throws(ZeroMQError) {
        try setBytesOption(ZMQ_ROUTING_ID, name: "ZMQ_ROUTING_ID", id)
    }

    /// Convenience for the options every long-lived actcluster socket sets.
    public func configure(
        linger: Duration = .zero, sendHighWaterMark: Int32? = nil, receiveHighWaterMark: Int32? = nil,
        maxMessageSize: Int64? = nil
    ) throws(ZeroMQError) {
        try set(.linger, Int32(linger.milliseconds))
        if let sendHighWaterMark { try set(.sendHighWaterMark, sendHighWaterMark) }
        if let receiveHighWaterMark { try set(.receiveHighWaterMark, receiveHighWaterMark) }
        if let maxMessageSize { try setMaxMessageSize(maxMessageSize) }
    }

    /// ZMTP-level heartbeats, so a silently dead peer is noticed even with no traffic.
    public func setHeartbeats(interval: Duration, timeout: Duration, ttl: Duration? = nil) throws(ZeroMQError) {
        try set(.heartbeatInterval, Int32(interval.milliseconds))
        try set(.heartbeatTimeout, Int32(timeout.milliseconds))
        if let ttl { try set(.heartbeatTTL, Int32(ttl.milliseconds)) }
    }

    /// TCP keepalive: the kernel drops a connection whose peer answers none of `count` probes,
    /// sent `interval` apart after `idle` without traffic. Whole seconds, at least 1. Costs
    /// libzmq nothing, unlike ZMTP heartbeats.
    public func setTCPKeepalive(idle: Duration, interval: Duration, count: Int) throws(ZeroMQError) {
        try set(.tcpKeepalive, 1)
        try set(.tcpKeepaliveIdle, Int32(max(1, idle.milliseconds / 1000)))
        try set(.tcpKeepaliveInterval, Int32(max(1, interval.milliseconds / 1000)))
        try set(.tcpKeepaliveCount, Int32(max(1, count)))
    }

    func setBytesOption(_ code: Int32, name: String, _ bytes: [UInt8]) throws(ZeroMQError) {
        let handle = try open("zmq_setsockopt(\(name))")
        let status = bytes.withUnsafeBytes { zmq_setsockopt(handle, code, $0.baseAddress, $0.count) }
        guard status == 0 else { throw ZeroMQError.last("zmq_setsockopt(\(name))") }
    }

    func bytesOption(_ code: Int32, name: String, capacity: Int) throws(ZeroMQError) -> [UInt8] {
        let handle = try open("zmq_getsockopt(\(name))")
        var buffer = [UInt8](repeating: 0, count: capacity)
        var size = capacity
        let status = buffer.withUnsafeMutableBytes { zmq_getsockopt(handle, code, $0.baseAddress, &size) }
        guard status == 0 else { throw ZeroMQError.last("zmq_getsockopt(\(name))") }
        return Array(buffer.prefix(size))
    }
}
