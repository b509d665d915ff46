/// Checks of the frames every message starts with: protocol and version, command, frame
/// count and the size of the control body.
enum FrameCheck {
    typealias Command = ClusterWire.Command
    typealias Channel = ClusterWire.Channel

    /// The command of a message on `channel`, after checking frame 0 and frame 1.
    static func command(_ frames: [[UInt8]], channel: Channel) throws(ProtocolError) -> Command {
        guard frames.count >= 2 else {
            throw ProtocolError(
                .frameCount, message: "message", location: "frames", expected: "at least 2 (protocol, command)", found: "\(frames.count)")
        }
        let header = frames[0]
        guard header == channel.header else {
            let expected = "\(String(decoding: channel.header, as: UTF8.self)) (\(channel))"
            if let other = Channel.allCases.first(where: { $0.header == header }) {
                throw ProtocolError(
                    .wrongProtocol, message: "message", location: "frame 0", expected: expected,
                    found: "\(String(decoding: header, as: UTF8.self)) (\(other)): the peer is connected to the wrong endpoint")
            }
            let sameProtocol = header.count == ClusterWire.Limits.headerFrameSize && header.starts(with: Array(channel.rawValue.utf8))
            throw ProtocolError(
                .wrongProtocol, message: "message", location: "frame 0", expected: expected,
                found: sameProtocol
                    ? "version \(String(decoding: header.suffix(2), as: UTF8.self)); the peers run different actcluster versions"
                    : Printable.bytes(header))
        }
        guard frames[1].count == 1 else {
            throw ProtocolError(.frameCount, message: "message", location: "frame 1", expected: "a 1-byte command", found: "\(frames[1].count) bytes")
        }
        guard let command = Command(rawValue: frames[1][0]) else {
            throw ProtocolError(.unknownCommand, message: "message", location: "frame 1", expected: "a command of protocol \(String(decoding: channel.header, as: UTF8.self))", found: "byte \(frames[1][0])")
        }
        guard command.channel == channel else {
            throw ProtocolError(.wrongDirection, message: command.name, location: "frame 1", expected: "a command of the \(channel)", found: "a command of the \(command.channel)")
        }
        return command
    }

    static func wrongDirection(_ command: Command, receiver: String) -> ProtocolError {
        ProtocolError(.wrongDirection, message: command.name, location: "frame 1", expected: "a command a \(receiver) receives", found: "\(command.name), which only a \(receiver) sends")
    }

    /// Checks the frame count and the control body's size; returns the parsed body.
    static func body(_ frames: [[UInt8]], _ command: Command, frameCount: Int) throws(ProtocolError) -> Fields {
        guard frames.count == frameCount else {
            throw ProtocolError(.frameCount, message: command.name, location: "frames", expected: "\(frameCount)", found: "\(frames.count)")
        }
        guard frames[2].count <= ClusterWire.Limits.maxControlBodyBytes else {
            throw ProtocolError(
                .tooLarge, message: command.name, location: "frame 2 (body)", expected: "at most \(ClusterWire.Limits.maxControlBodyBytes) bytes",
                found: "\(frames[2].count) bytes")
        }
        return try Fields(frame: frames[2], message: command.name)
    }

    static func frames(_ channel: Channel, _ command: Command, _ body: FieldWriter, _ more: [[UInt8]] = []) -> [[UInt8]] {
        more.isEmpty ? [channel.header, command.frame, body.bytes] : [channel.header, command.frame, body.bytes] + more
    }

    /// ``frames(_:_:_:_:)`` written into `frames`, `count` of them (any after the body are the
    /// caller's to set), reusing the arrays it holds when no one else does: a coordinator sends
    /// an ACK and an ASSIGN per unit, thousands a second.
    static func write(_ channel: Channel, _ command: Command, into frames: inout [[UInt8]], count: Int, body: (inout FieldWriter) -> Void) {
        if frames.count != count { frames = [[UInt8]](repeating: [], count: count) }
        frames[0] = channel.header
        frames[1] = command.frame
        frames[2].removeAll(keepingCapacity: true)
        // The body array moves into the writer and back: one owner at a time, so no copy.
        var writer = FieldWriter(continuing: frames[2])
        frames[2] = []
        body(&writer)
        frames[2] = writer.take()
    }
}

/// The routing envelope a ROUTER socket adds. A DEALER peer's messages arrive as
/// `[routing id, frames…]`; a REQ peer's as `[routing id, empty delimiter, frames…]`.
/// Replies go back with the same envelope.
public struct Envelope: Equatable, Sendable {
    public var routingID: [UInt8]
    /// Whether the peer is a REQ socket (an empty delimiter frame follows the routing id).
    public var delimited: Bool

    public init(routingID: [UInt8], delimited: Bool = false) {
        self.routingID = routingID
        self.delimited = delimited
    }

    /// Splits what a ROUTER received into the envelope and the message frames.
    public static func split(_ frames: [[UInt8]]) throws(ProtocolError) -> (Envelope, [[UInt8]]) {
        guard frames.count >= 2, !frames[0].isEmpty else {
            throw ProtocolError(.frameCount, message: "message", location: "envelope", expected: "a routing id and the message", found: "\(frames.count) frames")
        }
        if frames[1].isEmpty {
            return (Envelope(routingID: frames[0], delimited: true), Array(frames[2...]))
        }
        return (Envelope(routingID: frames[0]), Array(frames[1...]))
    }

    /// The frames a ROUTER sends to deliver `message` to this peer.
    public func wrap(_ message: [[UInt8]]) -> [[UInt8]] {
        delimited ? [routingID, []] + message : [routingID] + message
    }
}
