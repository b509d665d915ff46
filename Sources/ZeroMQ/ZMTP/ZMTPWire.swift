/// ZMTP 3.1 (ZeroMQ RFC 23 with RFC 37's PING/PONG), the NULL mechanism only: the constants
/// and the encoder of ``ZMTPClient``. What a connection carries, in order:
///
/// 1. Greeting, 64 bytes each way: signature `FF`, 8 padding bytes, `7F`; version major 3,
///    minor 1; mechanism `NULL` padded with zeros to 20 bytes; as-server (0 for us); 31
///    zero filler bytes. libzmq sends its greeting in pieces (signature, then the major
///    version once it has seen ours, then the rest) and fills the padding with its routing-id
///    length, so a reader MUST NOT check the padding or expect 64 bytes at once.
/// 2. Handshake: each side sends one READY command whose metadata names its socket type
///    (`Socket-Type`) and, for a DEALER, its `Identity` (empty: the ROUTER makes one up).
///    Messages MUST wait for the peer's READY: libzmq reads anything that follows our READY
///    before it has sent its own as another handshake command, and drops the connection.
/// 3. Traffic: frames. A frame is a flags byte (MORE 0x01: another frame of this message
///    follows; LONG 0x02: the size is 8 bytes; COMMAND 0x04: a command, never MORE), the
///    size (1 byte, or 8 bytes big-endian) and the body. A command body is a name (1-byte
///    length, then the name) and data. After the handshake: PING (TTL in tenths of a second,
///    2 bytes, and up to 16 bytes of context) MUST be answered by PONG with the same
///    context; a peer with ZMQ_HEARTBEAT_TIMEOUT drops a connection that does not.
///    ERROR (a 1-byte-length reason) ends the connection.
enum ZMTPWire {
    static let greetingSize = 64
    /// Bytes of the greeting that identify a ZMTP 2+ peer: `FF`, padding, `7F`.
    static let signatureSize = 10

    enum Flag {
        static let more: UInt8 = 0x01
        static let long: UInt8 = 0x02
        static let command: UInt8 = 0x04
        /// Bits that MUST be zero.
        static let reserved: UInt8 = 0xF8
    }

    /// Largest command accepted: NULL's READY and PING are tens of bytes.
    static let maxCommandSize = 65_536
    /// PING context beyond this is not echoed (RFC 37).
    static let maxPingContext = 16

    /// Our greeting: ZMTP 3.1, NULL, as-server 0.
    static let greeting: [UInt8] = {
        var bytes = [UInt8](repeating: 0, count: greetingSize)
        bytes[0] = 0xFF
        bytes[9] = 0x7F
        bytes[10] = 3
        bytes[11] = 1
        bytes.replaceSubrange(12..<16, with: Array("NULL".utf8))
        return bytes
    }()

    /// Appends one frame: flags, short or long size, body.
    static func appendFrame(_ body: UnsafeRawBufferPointer, more: Bool, command: Bool = false, to out: inout [UInt8]) {
        var flags: UInt8 = (more ? Flag.more : 0) | (command ? Flag.command : 0)
        if body.count > 255 {
            flags |= Flag.long
            out.append(flags)
            let size = UInt64(body.count)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: size >> UInt64(shift))) }
        } else {
            out.append(flags)
            out.append(UInt8(body.count))
        }
        out.append(contentsOf: body)
    }

    static func appendFrame(_ body: [UInt8], more: Bool, command: Bool = false, to out: inout [UInt8]) {
        body.withUnsafeBytes { appendFrame($0, more: more, command: command, to: &out) }
    }

    /// A command frame: name (1-byte length) and data.
    static func appendCommand(_ name: String, data: [UInt8], to out: inout [UInt8]) {
        var body = [UInt8]()
        body.reserveCapacity(1 + name.utf8.count + data.count)
        body.append(UInt8(name.utf8.count))
        body += name.utf8
        body += data
        appendFrame(body, more: false, command: true, to: &out)
    }

    /// READY with `Socket-Type` and `Identity` metadata (name: 1-byte length; value: 4-byte
    /// big-endian length).
    static func appendReady(socketType: String, identity: [UInt8], to out: inout [UInt8]) {
        var metadata = [UInt8]()
        for (name, value) in [("Socket-Type", Array(socketType.utf8)), ("Identity", identity)] {
            metadata.append(UInt8(name.utf8.count))
            metadata += name.utf8
            let size = UInt32(value.count)
            metadata += [UInt8(size >> 24), UInt8(truncatingIfNeeded: size >> 16), UInt8(truncatingIfNeeded: size >> 8), UInt8(truncatingIfNeeded: size)]
            metadata += value
        }
        appendCommand("READY", data: metadata, to: &out)
    }
}
