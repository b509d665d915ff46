import CZeroMQ

/// A ZAP handler (ZeroMQ RFC 27) that admits CURVE clients by public key. libzmq asks the
/// handler about every CURVE handshake on the context's server sockets; without one, any client
/// that knows the server's public key gets in. The owner polls ``socket`` and calls
/// ``answerPending()``; a handshake waits until it does, so the owner's loop must keep running.
public final class CurveAuthenticator {
    /// What the handler decided about one handshake.
    public struct Decision: Sendable, Equatable {
        /// The client's public key (Z85), or empty if the mechanism was not CURVE.
        public var clientKey: String
        /// The peer's IP address as libzmq reports it.
        public var address: String
        public var mechanism: String
        public var admitted: Bool
    }

    /// Poll this socket for readability.
    public let socket: ZeroMQSocket
    private let allowed: Set<String>

    /// Binds the context's ZAP endpoint. Create it before the CURVE server sockets bind.
    public init(context: ZeroMQContext, allowedClientKeys: Set<String>) throws(ZeroMQError) {
        socket = try context.socket(.reply)
        try socket.set(.linger, 0)
        try socket.bind("inproc://zeromq.zap.01")
        allowed = allowedClientKeys
    }

    /// Answers every request waiting on the socket; returns what was decided.
    public func answerPending() throws(ZeroMQError) -> [Decision] {
        var decisions: [Decision] = []
        while let frames = try socket.receiveMultipart(timeout: .zero) {
            let parts = frames.map(\.bytes)
            // version, request id, domain, address, routing id, mechanism, credentials…
            guard parts.count >= 6 else {
                try reply(requestID: parts.count > 1 ? parts[1] : [], status: "500", text: "malformed ZAP request")
                continue
            }
            let mechanism = String(decoding: parts[5], as: UTF8.self)
            var decision = Decision(clientKey: "", address: String(decoding: parts[3], as: UTF8.self), mechanism: mechanism, admitted: false)
            if mechanism == "CURVE", parts.count >= 7, parts[6].count == 32 {
                decision.clientKey = Self.z85(parts[6])
                decision.admitted = allowed.contains(decision.clientKey)
            }
            try reply(
                requestID: parts[1], status: decision.admitted ? "200" : "400",
                text: decision.admitted ? "OK" : "client key not allowed", userID: decision.clientKey)
            decisions.append(decision)
        }
        return decisions
    }

    private func reply(requestID: [UInt8], status: String, text: String, userID: String = "") throws(ZeroMQError) {
        try socket.send(multipart: [Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), Array(userID.utf8), []])
    }

    /// Z85 text of 32 key bytes.
    static func z85(_ bytes: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        _ = zmq_z85_encode(&text, bytes, bytes.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
