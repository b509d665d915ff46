import Glibc
import Testing

@testable import ZeroMQ

private let patience: Duration = .seconds(5)

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A fresh endpoint to bind a ROUTER on (port 0 or a new socket file).
private func bindEndpoint(_ transport: String) -> String {
    transport == "tcp" ? "tcp://127.0.0.1:*" : "ipc:///tmp/actcluster-zmtp-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// A libzmq ROUTER, set up by `configure`, listening on a fresh endpoint of `transport`; and
/// that endpoint.
private func listeningRouter(
    _ context: ZeroMQContext, _ transport: String = "tcp", _ configure: (ZeroMQSocket) throws -> Void = { _ in }
) throws -> (router: ZeroMQSocket, endpoint: String) {
    let router = try context.socket(.router)
    try router.configure(linger: .zero)
    try configure(router)
    return (router, try router.bind(bindEndpoint(transport)))
}

private struct Received {
    var ready: [Int] = []
    var messages: [(connection: Int, frames: [[UInt8]])] = []
    var closed: [(connection: Int, error: ZMTPError)] = []
}

/// Runs the client until `done` holds or `limit` passes; everything it reported.
private func pump(_ client: ZMTPClient, limit: Duration = patience, until done: (Received) -> Bool = { _ in false }) throws -> Received {
    var received = Received()
    let deadline = ContinuousClock.now + limit
    while !done(received) && ContinuousClock.now < deadline {
        try client.wait(timeout: .milliseconds(20)) { event in
            switch event {
            case .ready(let index): received.ready.append(index)
            case .message(let index, let frames): received.messages.append((index, frames))
            case .closed(let index, let error): received.closed.append((index, error))
            }
        }
    }
    return received
}

private func realtimeNow() -> Duration {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
}

@Suite struct ZMTPAgainstLibzmq {
    /// The arrival time is the kernel's, not the read's: a message read 300 ms after it was sent
    /// is stamped well before the read began (the slack is for a loaded host, where libzmq's
    /// I/O thread may send late). `bench dispatch` times leases by it.
    @Test func arrivalIsTheKernelsReceiveTime() throws {
        let context = try ZeroMQContext()
        let (router, endpoint) = try listeningRouter(context)
        let client = try ZMTPClient()
        client.stampsArrivals = true
        let index = try client.connect(endpoint)
        try client.send(index, [bytes("hello")])
        _ = try pump(client) { !$0.ready.isEmpty }
        let routingID = try #require(try router.receiveMultipart(timeout: patience)).map(\.bytes)[0]

        let sent = realtimeNow()
        try router.send(multipart: [routingID, bytes("reply")])
        // Long enough that libzmq's I/O thread has sent the reply by the read, on a loaded host too.
        usleep(1_000_000)
        let readFrom = realtimeNow()
        let reply = try pump(client) { !$0.messages.isEmpty }
        #expect(reply.messages.first?.frames == [bytes("reply")])
        let stamp = try #require(client.lastArrival(index))
        let arrival = Duration.seconds(stamp.tv_sec) + .nanoseconds(stamp.tv_nsec)
        #expect(arrival >= sent)
        #expect(arrival < readFrom - .milliseconds(100), "stamped \(readFrom - arrival) before the read")

        let plain = try ZMTPClient()
        let other = try plain.connect(endpoint)
        _ = try pump(plain) { !$0.ready.isEmpty }
        #expect(plain.lastArrival(other) == nil)
    }

    @Test(arguments: ["tcp", "ipc"])
    func handshakeAndMultipartMessagesBothWays(transport: String) throws {
        let context = try ZeroMQContext()
        let (router, endpoint) = try listeningRouter(context, transport) { try $0.set(.routerMandatory, 1) }
        let client = try ZMTPClient()
        let index = try client.connect(endpoint)

        let long = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let big = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        // Queued before the handshake: it must go out after our READY.
        try client.send(index, [bytes("hello"), [], long])
        let handshake = try pump(client) { !$0.ready.isEmpty }
        #expect(handshake.ready == [index])
        #expect(handshake.closed.isEmpty)
        #expect(client.isReady(index))
        #expect(client.peerVersion(index).map { [$0.major, $0.minor] } == [3, 1])

        let request = try #require(try router.receiveMultipart(timeout: patience)).map(\.bytes)
        #expect(request.count == 4)
        #expect(Array(request.dropFirst()) == [bytes("hello"), [], long])
        let routingID = request[0]

        try router.send(multipart: [routingID, [], long, big, bytes("end")])
        let reply = try pump(client) { !$0.messages.isEmpty }
        #expect(reply.messages.count == 1)
        #expect(reply.messages.first?.connection == index)
        #expect(reply.messages.first?.frames == [[], long, big, bytes("end")])

        try client.send(index, [big, []])
        #expect(try router.receiveMultipart(timeout: patience)?.map(\.bytes) == [routingID, big, []])
    }

    @Test(arguments: ["tcp", "ipc"])
    func manyConnectionsAreTheRoutersDistinctPeers(transport: String) throws {
        let context = try ZeroMQContext()
        let (router, endpoint) = try listeningRouter(context, transport) { try $0.set(.routerMandatory, 1) }
        let client = try ZMTPClient()
        let count = 64
        for index in 0..<count {
            #expect(try client.connect(endpoint) == index)
            try client.send(index, [bytes("from \(index)")])
        }
        let handshakes = try pump(client) { $0.ready.count == count }
        #expect(Set(handshakes.ready) == Set(0..<count))

        var routingIDs: [Int: [UInt8]] = [:]
        for _ in 0..<count {
            let frames = try #require(try router.receiveMultipart(timeout: patience)).map(\.bytes)
            #expect(frames.count == 2)
            let index = try #require(Int(String(decoding: frames[1], as: UTF8.self).dropFirst(5)))
            routingIDs[index] = frames[0]
        }
        #expect(routingIDs.count == count)
        #expect(Set(routingIDs.values).count == count, "each connection is its own peer")
        for (index, routingID) in routingIDs { try router.send(multipart: [routingID, bytes("to \(index)")]) }
        let replies = try pump(client) { $0.messages.count == count }
        #expect(replies.messages.count == count)
        for (index, frames) in replies.messages { #expect(frames == [bytes("to \(index)")]) }
    }

    /// The coordinator sets ZMQ_HEARTBEAT_IVL/TIMEOUT: libzmq PINGs every interval and drops a
    /// connection that sends nothing (not even PONG) within the timeout.
    @Test func answeringPingsKeepsASilentConnectionOpen() throws {
        let context = try ZeroMQContext()
        let (router, endpoint) = try listeningRouter(context) {
            try $0.set(.routerMandatory, 1)
            // A timeout of 1 s: a test thread descheduled on a loaded 2-core host must not
            // miss it (the control below shows the drop itself at 300 ms).
            try $0.setHeartbeats(interval: .milliseconds(100), timeout: .seconds(1))
        }
        let client = try ZMTPClient()
        let index = try client.connect(endpoint)
        try client.send(index, [bytes("hello")])
        _ = try pump(client) { !$0.ready.isEmpty }
        let routingID = try #require(try router.receiveMultipart(timeout: patience))[0].bytes

        // Three timeouts of silence from our side, but for PONGs.
        let quiet = try pump(client, limit: .seconds(3))
        #expect(quiet.closed.isEmpty)
        #expect(quiet.messages.isEmpty)
        #expect(client.pingsAnswered >= 10)

        // With ROUTER_MANDATORY a send to a dropped peer fails: this one must not.
        try router.send(multipart: [routingID, bytes("still there?")])
        let reply = try pump(client) { !$0.messages.isEmpty }
        #expect(reply.messages.map(\.frames) == [[bytes("still there?")]])
        try client.send(index, [bytes("yes")])
        #expect(try router.receiveMultipart(timeout: patience)?.map(\.bytes) == [routingID, bytes("yes")])
    }

    /// The control: the same client, not answering PINGs, is dropped within a few timeouts.
    @Test func aClientThatIgnoresPingsIsDropped() throws {
        let context = try ZeroMQContext()
        let (router, endpoint) = try listeningRouter(context) { try $0.setHeartbeats(interval: .milliseconds(100), timeout: .milliseconds(300)) }
        defer { router.close() }
        let client = try ZMTPClient()
        client.answersPings = false
        let index = try client.connect(endpoint)
        let events = try pump(client) { !$0.closed.isEmpty }
        #expect(events.ready == [index])
        #expect(events.closed.map(\.error.reason) == [.closedByPeer])
        #expect(client.pingsAnswered == 0)
        #expect(throws: ZMTPError.self) { try client.send(index, [bytes("late")]) }
    }

    /// libzmq hangs up on a NULL client right after the versions, before its mechanism.
    @Test func aCurveServerIsRefusedWithAClearError() throws {
        let context = try ZeroMQContext()
        let (router, endpoint) = try listeningRouter(context) { try $0.makeCurveServer(secretKey: try CurveKeyPair.generate().secretKey) }
        defer { router.close() }
        let client = try ZMTPClient()
        _ = try client.connect(endpoint)
        let events = try pump(client) { !$0.closed.isEmpty }
        let error = try #require(events.closed.first?.error)
        #expect(error.reason == .closedDuringHandshake)
        #expect(error.description.contains("CURVE or PLAIN security"))
    }

    @Test func aPeerOfTheWrongSocketTypeIsRefused() throws {
        let context = try ZeroMQContext()
        let pull = try context.socket(.pull)
        try pull.configure(linger: .zero)
        let endpoint = try pull.bind("tcp://127.0.0.1:*")
        let client = try ZMTPClient()
        _ = try client.connect(endpoint)
        let events = try pump(client) { !$0.closed.isEmpty }
        #expect(events.ready.isEmpty)
        #expect(events.closed.first?.error.reason == .incompatibleSocketType(peer: "PULL", expected: ["ROUTER"]))
    }

    @Test func anOversizedMessageClosesTheConnection() throws {
        let context = try ZeroMQContext()
        let (router, endpoint) = try listeningRouter(context)
        let client = try ZMTPClient(maxMessageSize: 1000)
        let index = try client.connect(endpoint)
        try client.send(index, [bytes("hi")])
        _ = try pump(client) { !$0.ready.isEmpty }
        let routingID = try #require(try router.receiveMultipart(timeout: patience))[0].bytes
        try router.send(multipart: [routingID, [UInt8](repeating: 1, count: 600), [UInt8](repeating: 2, count: 600)])
        let events = try pump(client) { !$0.closed.isEmpty }
        #expect(events.messages.isEmpty)
        #expect(events.closed.first?.error.reason == .messageTooLarge(size: 1200, limit: 1000))
    }

    /// The bench connects before the coordinator listens: refusals are retried.
    @Test func connectingBeforeThePeerListensIsRetried() throws {
        let endpoint = bindEndpoint("ipc")
        let client = try ZMTPClient(reconnectInterval: .milliseconds(20))
        let index = try client.connect(endpoint)
        try client.send(index, [bytes("early")])
        #expect(try pump(client, limit: .milliseconds(200)).closed.isEmpty)

        let context = try ZeroMQContext()
        let router = try context.socket(.router)
        try router.configure(linger: .zero)
        try router.bind(endpoint)
        #expect(try pump(client) { !$0.ready.isEmpty }.ready == [index])
        #expect(try router.receiveMultipart(timeout: patience)?.last?.bytes == bytes("early"))

        // One connection at a time: the second waits its turn until the first gives up.
        let patient = try ZMTPClient(connectTimeout: .milliseconds(200), reconnectInterval: .milliseconds(20), maxConnecting: 1)
        let nobody = try patient.connect(bindEndpoint("ipc"))
        let second = try patient.connect(endpoint)
        let given = try pump(patient) { !$0.ready.isEmpty }
        #expect(given.closed.map(\.connection) == [nobody])
        #expect(given.closed.first?.error.description.contains("could not connect for 0.2 s") == true)
        #expect(given.ready == [second])
    }
}

@Suite struct ZMTPAgainstGarbage {
    /// A plain TCP listener that answers a connection with `reply`: not a ZMTP peer.
    @Test(arguments: [
        (bytes("HTTP/1.1 400 Bad Request\r\n\r\n"), "not a ZeroMQ (ZMTP 3) socket: its greeting starts with 48 54 54 50"),
        ([0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 2, 5], "the peer speaks ZMTP 2.x"),
        ([0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0, 0], "not a ZeroMQ (ZMTP 3) socket"),
        ([0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + bytes("CURVE") + [UInt8](repeating: 0, count: 47), "the peer wants the CURVE security mechanism"),
    ])
    func aBadGreetingGivesAClearError(reply: [UInt8], expected: String) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && listen(listener, 4) == 0 && getsockname(listener, $0, &length) == 0 }
        }
        #expect(bound)
        let port = UInt16(bigEndian: address.sin_port)

        let client = try ZMTPClient()
        _ = try client.connect("tcp://127.0.0.1:\(port)")
        // The kernel completes the TCP handshake; accept once the client has connected.
        _ = try pump(client, limit: .milliseconds(100))
        let peer = accept(listener, nil, nil)
        #expect(peer >= 0)
        defer { close(peer) }
        #expect(reply.withUnsafeBytes { write(peer, $0.baseAddress, $0.count) } == reply.count)

        let events = try pump(client) { !$0.closed.isEmpty }
        let error = try #require(events.closed.first?.error)
        #expect(error.description.contains(expected), "\(error)")
        #expect(error.description.hasPrefix("ZMTP connection to tcp://127.0.0.1:\(port): "))
    }
}

@Suite struct ZMTPDecoding {
    /// What libzmq sends a DEALER, and more: a greeting with its padding filled in, READY,
    /// PING with a context, PONG, a command of a later version, then messages with empty,
    /// short and long frames.
    private static let stream: [UInt8] = {
        var out: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + bytes("NULL") + [UInt8](repeating: 0, count: 16 + 32)
        ZMTPWire.appendReady(socketType: "ROUTER", identity: [], to: &out)
        ZMTPWire.appendCommand("PING", data: [0, 30] + bytes("context"), to: &out)
        ZMTPWire.appendCommand("PONG", data: [], to: &out)
        ZMTPWire.appendCommand("SUBSCRIBE", data: bytes("x"), to: &out)
        ZMTPWire.appendFrame([], more: true, to: &out)
        ZMTPWire.appendFrame(bytes("a"), more: true, to: &out)
        ZMTPWire.appendFrame([UInt8](repeating: 9, count: 300), more: false, to: &out)
        ZMTPWire.appendFrame([], more: false, to: &out)
        return out
    }()

    private static let expected: [ZMTPDecoder.Event] = [
        .greeting,
        .ready(socketType: "ROUTER", identity: []),
        .ping(context: bytes("context")),
        .message([[], bytes("a"), [UInt8](repeating: 9, count: 300)]),
        .message([[]]),
    ]

    private func decode(chunk: Int) throws -> [ZMTPDecoder.Event] {
        let decoder = ZMTPDecoder(endpoint: "test", maxMessageSize: 1000, initialCapacity: 16)
        var events: [ZMTPDecoder.Event] = []
        var offset = 0
        while offset < Self.stream.count {
            let end = min(offset + chunk, Self.stream.count)
            Self.stream[offset..<end].withUnsafeBytes { decoder.append($0) }
            offset = end
            while let event = try decoder.next() { events.append(event) }
        }
        return events
    }

    @Test(arguments: [1, 7, 64, 100_000])
    func bytesSplitAnyWayDecodeToTheSameEvents(chunk: Int) throws {
        #expect(try decode(chunk: chunk) == Self.expected)
    }

    @Test func theHeaderAloneRejectsAnOversizedFrame() throws {
        let decoder = ZMTPDecoder(endpoint: "test", maxMessageSize: 1000)
        var out = Array(Self.stream.prefix(64))
        ZMTPWire.appendReady(socketType: "ROUTER", identity: [], to: &out)
        // A long frame's header announcing 2⁶⁰ bytes, with no body.
        out += [ZMTPWire.Flag.long, 0x10, 0, 0, 0, 0, 0, 0, 0]
        out.withUnsafeBytes { decoder.append($0) }
        #expect(try decoder.next() == .greeting)
        #expect(try decoder.next() == .ready(socketType: "ROUTER", identity: []))
        #expect(throws: ZMTPError(endpoint: "test", reason: .messageTooLarge(size: 1 << 60, limit: 1000))) { try decoder.next() }
    }

    @Test func anErrorCommandEndsTheConnectionWithItsReason() throws {
        let decoder = ZMTPDecoder(endpoint: "test", maxMessageSize: 1000)
        var out = Array(Self.stream.prefix(64))
        ZMTPWire.appendCommand("ERROR", data: [9] + bytes("forbidden"), to: &out)
        out.withUnsafeBytes { decoder.append($0) }
        #expect(try decoder.next() == .greeting)
        #expect(throws: ZMTPError(endpoint: "test", reason: .peerError("forbidden"))) { try decoder.next() }
    }

    @Test func ourGreetingAndReadyAreWhatTheRFCSays() {
        let greeting = ZMTPWire.greeting
        #expect(greeting.count == 64)
        #expect(greeting[0] == 0xFF && greeting[9] == 0x7F && greeting[10] == 3 && greeting[11] == 1)
        #expect(Array(greeting[12..<32]) == bytes("NULL") + [UInt8](repeating: 0, count: 16))
        #expect(greeting[32] == 0, "as-server")
        var ready: [UInt8] = []
        ZMTPWire.appendReady(socketType: "DEALER", identity: [], to: &ready)
        let body = [5] + bytes("READY") + [11] + bytes("Socket-Type") + [0, 0, 0, 6] + bytes("DEALER") + [8] + bytes("Identity") + [0, 0, 0, 0]
        #expect(ready == [ZMTPWire.Flag.command, UInt8(body.count)] + body)
    }
}
