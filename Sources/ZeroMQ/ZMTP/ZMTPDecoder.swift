/// Turns one connection's inbound bytes into the greeting check, the handshake and messages,
/// however the reads split them. Reads go straight into its buffer (``fill(minimum:_:)``);
/// ``next()`` returns one event at a time, so a caller that stops early (its handler threw,
/// or it closed the connection) loses nothing that was read.
final class ZMTPDecoder {
    enum Event: Equatable {
        /// The peer's greeting is complete and acceptable: time to send our READY.
        case greeting
        /// The peer's READY: the handshake is complete.
        case ready(socketType: String, identity: [UInt8])
        /// One message, all its frames.
        case message([[UInt8]])
        /// A PING to answer with PONG and this context.
        case ping(context: [UInt8])
    }

    enum Phase { case greeting, handshake, traffic }

    let endpoint: String
    /// Largest message (sum of its frames) accepted.
    let maxMessageSize: Int
    private(set) var phase = Phase.greeting
    /// The version in the peer's greeting, once it is complete.
    private(set) var peerVersion: (major: UInt8, minor: UInt8)?

    /// Bytes `start..<end` are read and not yet decoded.
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0
    private var end = 0
    /// The frames so far of the message being received.
    private var frames: [[UInt8]] = []
    private var messageBytes = 0

    init(endpoint: String, maxMessageSize: Int, initialCapacity: Int = 4096) {
        self.endpoint = endpoint
        self.maxMessageSize = maxMessageSize
        capacity = max(initialCapacity, ZMTPWire.greetingSize)
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// Calls `read` with at least `minimum` free bytes of the buffer; keeps what it read.
    /// Returns what `read` returned (bytes read, 0 at end of stream, or -1).
    func fill(minimum: Int = 2048, _ read: (UnsafeMutableRawPointer, Int) -> Int) -> Int {
        reserve(minimum)
        let count = read(buffer + end, capacity - end)
        if count > 0 { end += count }
        return count
    }

    /// Copies `bytes` in (tests feed the decoder this way).
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (buffer + end).copyMemory(from: base, byteCount: bytes.count)
        end += bytes.count
    }

    /// Makes room for `count` bytes after `end`: reuse the front first, then grow.
    private func reserve(_ count: Int) {
        if start == end { start = 0; end = 0 }
        if capacity - end >= count { return }
        if start > 0 {
            (buffer).copyMemory(from: buffer + start, byteCount: end - start)
            end -= start
            start = 0
            if capacity - end >= count { return }
        }
        var grown = capacity * 2
        while grown - end < count { grown *= 2 }
        let larger = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
        larger.copyMemory(from: buffer, byteCount: end)
        buffer.deallocate()
        buffer = larger
        capacity = grown
    }

    /// The next event in the bytes read so far, or nil until more arrive. PONG and commands
    /// this client does not know are skipped. Throws on anything that ends the connection.
    func next() throws(ZMTPError) -> Event? {
        while true {
            let available = end - start
            let bytes = UnsafeRawBufferPointer(start: buffer + start, count: available)
            if phase == .greeting {
                guard try greeting(bytes) else { return nil }
                start += ZMTPWire.greetingSize
                phase = .handshake
                return .greeting
            }
            guard available >= 2 else { return nil }
            let flags = bytes[0]
            guard flags & ZMTPWire.Flag.reserved == 0 else {
                throw failure(.malformed("a frame with reserved flag bits set (flags 0x\(String(flags, radix: 16)))"))
            }
            let isCommand = flags & ZMTPWire.Flag.command != 0
            let isLong = flags & ZMTPWire.Flag.long != 0
            let hasMore = flags & ZMTPWire.Flag.more != 0
            let headerSize = isLong ? 9 : 2
            guard available >= headerSize else { return nil }
            var size = UInt64(bytes[1])
            if isLong { size = (1..<9).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) } }
            if isCommand {
                guard !hasMore else { throw failure(.malformed("a command frame with the MORE flag")) }
                guard size <= UInt64(ZMTPWire.maxCommandSize) else { throw failure(.messageTooLarge(size: size, limit: ZMTPWire.maxCommandSize)) }
            } else {
                guard phase == .traffic else { throw failure(.malformed("a message frame before the peer's READY")) }
                // Checked before buffering, so a huge announced size costs nothing.
                guard size <= UInt64(maxMessageSize - messageBytes) else {
                    throw failure(.messageTooLarge(size: UInt64(messageBytes) &+ size, limit: maxMessageSize))
                }
            }
            let frameSize = headerSize + Int(size)
            guard available >= frameSize else {
                reserve(frameSize - available)
                return nil
            }
            let body = UnsafeRawBufferPointer(rebasing: bytes[headerSize..<frameSize])
            start += frameSize
            if isCommand {
                if let event = try command(body) { return event }
                continue
            }
            frames.append([UInt8](body))
            messageBytes += Int(size)
            if !hasMore {
                let message = frames
                frames = []
                messageBytes = 0
                return .message(message)
            }
        }
    }

    /// Checks what has arrived of the peer's greeting as soon as it can: false until all 64
    /// bytes are there.
    private func greeting(_ bytes: UnsafeRawBufferPointer) throws(ZMTPError) -> Bool {
        // The padding (bytes 1–8) is free: libzmq puts its routing-id length there.
        if bytes.count >= 1 && bytes[0] != 0xFF || bytes.count >= ZMTPWire.signatureSize && bytes[9] != 0x7F {
            throw failure(.notZMTP(firstBytes: Array(bytes.prefix(ZMTPWire.signatureSize))))
        }
        if bytes.count >= 11 && bytes[10] < 3 { throw failure(.unsupportedVersion(major: bytes[10])) }
        guard bytes.count >= ZMTPWire.greetingSize else { return false }
        let mechanism = String(decoding: bytes[12..<32].prefix { $0 != 0 }, as: UTF8.self)
        guard mechanism == "NULL" else { throw failure(.unsupportedMechanism(mechanism)) }
        peerVersion = (bytes[10], bytes[11])
        return true
    }

    private func command(_ body: UnsafeRawBufferPointer) throws(ZMTPError) -> Event? {
        guard let nameSize = body.first.map(Int.init), body.count >= 1 + nameSize else {
            throw failure(.malformed("a command frame shorter than its name"))
        }
        let name = String(decoding: body[1..<1 + nameSize], as: UTF8.self)
        let data = UnsafeRawBufferPointer(rebasing: body[(1 + nameSize)...])
        if name == "ERROR" {
            let size = data.first.map(Int.init) ?? 0
            throw failure(.peerError(String(decoding: data.dropFirst().prefix(size), as: UTF8.self)))
        }
        if phase == .handshake {
            guard name == "READY" else { throw failure(.malformed("expected READY, got the \(name) command")) }
            let metadata = try properties(data)
            phase = .traffic
            return .ready(socketType: String(decoding: metadata["socket-type"] ?? [], as: UTF8.self), identity: metadata["identity"] ?? [])
        }
        guard name == "PING" else { return nil }
        guard data.count >= 2 else { throw failure(.malformed("a PING without its TTL")) }
        return .ping(context: Array(data.dropFirst(2).prefix(ZMTPWire.maxPingContext)))
    }

    /// READY's metadata: name (1-byte length), value (4-byte big-endian length). Names are
    /// case-insensitive (RFC 23), so they are returned in lower case.
    private func properties(_ data: UnsafeRawBufferPointer) throws(ZMTPError) -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        var offset = 0
        while offset < data.count {
            let nameSize = Int(data[offset])
            guard offset + 1 + nameSize + 4 <= data.count else { throw failure(.malformed("READY metadata is cut short")) }
            let name = String(decoding: data[(offset + 1)..<(offset + 1 + nameSize)], as: UTF8.self).lowercased()
            offset += 1 + nameSize
            let valueSize = (0..<4).reduce(0) { $0 << 8 | Int(data[offset + $1]) }
            offset += 4
            guard valueSize <= data.count - offset else { throw failure(.malformed("READY metadata is cut short")) }
            result[name] = Array(data[offset..<(offset + valueSize)])
            offset += valueSize
        }
        return result
    }

    private func failure(_ reason: ZMTPError.Reason) -> ZMTPError { ZMTPError(endpoint: endpoint, reason: reason) }
}
