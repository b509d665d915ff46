import Glibc

/// Why a ZMTP connection could not be made or was given up: which endpoint, and what went
/// wrong in a sentence a user can act on.
public struct ZMTPError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Reason: Equatable, Sendable {
        /// Not `tcp://host:port` or `ipc://path`.
        case invalidEndpoint(String)
        /// A system call failed with `errno` `code`.
        case system(call: String, code: Int32)
        /// The peer's first bytes are not the ZMTP signature (`FF`, 8 bytes, `7F`).
        case notZMTP(firstBytes: [UInt8])
        /// The peer speaks ZMTP older than 3.0.
        case unsupportedVersion(major: UInt8)
        /// The peer wants a security mechanism other than NULL.
        case unsupportedMechanism(String)
        /// The peer's READY names a socket type we cannot talk to.
        case incompatibleSocketType(peer: String, expected: [String])
        /// The peer broke the framing or handshake rules.
        case malformed(String)
        /// A message (all its frames) or a command is larger than the limit.
        case messageTooLarge(size: UInt64, limit: Int)
        /// The peer sent an ERROR command.
        case peerError(String)
        /// The peer closed the connection.
        case closedByPeer
        /// The peer closed the connection before the handshake was complete.
        case closedDuringHandshake
        /// Connecting kept failing (refused, no such socket file) for this long.
        case connectTimedOut(seconds: Double, lastCode: Int32)
        /// The connection was closed by its owner.
        case closed
    }

    public let endpoint: String
    public let reason: Reason

    public init(endpoint: String, reason: Reason) {
        self.endpoint = endpoint
        self.reason = reason
    }

    public var description: String {
        let prefix = "ZMTP connection to \(endpoint): "
        switch reason {
        case .invalidEndpoint(let why):
            return prefix + "\(why); use tcp://HOST:PORT or ipc://PATH"
        case .system(let call, let code):
            return prefix + "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .notZMTP(let bytes):
            let hex = bytes.prefix(10).map { String($0, radix: 16, uppercase: true).leftPadded(to: 2) }.joined(separator: " ")
            return prefix + "the peer is not a ZeroMQ (ZMTP 3) socket: its greeting starts with \(hex), not the signature FF … 7F"
        case .unsupportedVersion(let major):
            return prefix + "the peer speaks ZMTP \(major).x; this client needs ZMTP 3.0 or later (libzmq 4 or later)"
        case .unsupportedMechanism(let mechanism):
            return prefix + "the peer wants the \(mechanism.isEmpty ? "(empty)" : mechanism) security mechanism; this client speaks only NULL (no CURVE)"
        case .incompatibleSocketType(let peer, let expected):
            return prefix + "the peer is a \(peer) socket; expected \(expected.joined(separator: " or "))"
        case .malformed(let what):
            return prefix + "protocol violation: \(what)"
        case .messageTooLarge(let size, let limit):
            return prefix + "the peer sent a message of at least \(size) bytes, over the limit of \(limit)"
        case .peerError(let text):
            return prefix + "the peer refused the connection: \(text.isEmpty ? "(no reason given)" : text)"
        case .closedByPeer:
            return prefix + "the peer closed the connection"
        case .closedDuringHandshake:
            // libzmq hangs up without an ERROR or the rest of its greeting in these cases.
            return prefix + "the peer closed the connection during the handshake; a libzmq peer does that when it uses CURVE or PLAIN security (this client speaks only NULL) or cannot talk to our socket type"
        case .connectTimedOut(let seconds, let code):
            return prefix + "could not connect for \(seconds) s (last: \(String(cString: strerror(code)))); is the peer listening?"
        case .closed:
            return prefix + "the connection is closed"
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
