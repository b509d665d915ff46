import Synchronization
import Testing
import ZeroMQ

private func text(_ message: ZeroMQMessage) -> String { String(decoding: message.bytes, as: UTF8.self) }
private func texts(_ frames: [ZeroMQMessage]?) -> [String] { (frames ?? []).map(text) }
private final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

private let patience: Duration = .seconds(5)

@Suite struct RoundTrips {
    @Test func inprocPushPull() throws {
        let context = try ZeroMQContext()
        let pull = try context.socket(.pull)
        try pull.bind("inproc://round-trip")
        let push = try context.socket(.push)
        try push.connect("inproc://round-trip")
        try push.send(Array("hello".utf8))
        let received = try #require(try pull.receive(timeout: patience))
        #expect(text(received) == "hello")
        #expect(!received.hasMore)
    }

    @Test func tcpRequestReplyOnOSChosenPort() throws {
        let context = try ZeroMQContext()
        let reply = try context.socket(.reply)
        let endpoint = try reply.bind("tcp://127.0.0.1:*")
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        let port = try #require(Int(endpoint.split(separator: ":").last!))
        #expect(port > 0)

        let request = try context.socket(.request)
        try request.configure(linger: .zero)
        try request.connect(endpoint)
        try request.send(multipart: [Array("ping".utf8), [], Array("three".utf8)])
        let question = try #require(try reply.receiveMultipart(timeout: patience))
        #expect(texts(question) == ["ping", "", "three"])
        #expect(question.map(\.hasMore) == [true, true, false])
        try reply.send(Array("pong".utf8))
        #expect(texts(try request.receiveMultipart(timeout: patience)) == ["pong"])
    }

    @Test func zeroCopySendReleasesTheBufferAndDeliversItIntact() throws {
        let context = try ZeroMQContext()
        let pull = try context.socket(.pull)
        let endpoint = try pull.bind("tcp://127.0.0.1:*")
        let push = try context.socket(.push)
        try push.connect(endpoint)

        let count = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
        for index in 0..<count { buffer[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
        let expected = [UInt8](buffer)
        let released = Flag()
        nonisolated(unsafe) let owned = buffer
        let message = ZeroMQMessage(noCopy: buffer) {
            released.set()
            owned.deallocate()
        }
        try push.send(multipart: [ZeroMQMessage(Array("header".utf8)), message])
        #expect(message.count == 0, "a sent message is emptied")
        let frames = try #require(try pull.receiveMultipart(timeout: patience))
        #expect(frames.count == 2)
        #expect(text(frames[0]) == "header")
        #expect(frames[1].bytes == expected)
        // libzmq frees zero-copy buffers on its I/O thread once the bytes are on the wire.
        let deadline = ContinuousClock.now + patience
        while !released.isSet && ContinuousClock.now < deadline {
            _ = try? pull.receive(timeout: .milliseconds(10))
        }
        #expect(released.isSet)
    }
}

@Suite struct Timeouts {
    @Test func receiveTimeoutReturnsNilInsteadOfHanging() throws {
        let context = try ZeroMQContext()
        let pull = try context.socket(.pull)
        try pull.bind("tcp://127.0.0.1:*")
        let clock = ContinuousClock()
        let start = clock.now
        let message = try pull.receive(timeout: .milliseconds(150))
        let elapsed = clock.now - start
        #expect(message == nil)
        #expect(elapsed >= .milliseconds(140))
        #expect(elapsed < .seconds(3))
    }

    @Test func pollerReportsOnlyTheReadySocket() throws {
        let context = try ZeroMQContext()
        let quiet = try context.socket(.pull)
        try quiet.bind("inproc://quiet")
        let busy = try context.socket(.pull)
        try busy.bind("inproc://busy")
        let push = try context.socket(.push)
        try push.connect("inproc://busy")
        try push.send(Array("x".utf8))

        var poller = ZeroMQPoller()
        poller.add(quiet)
        poller.add(busy)
        #expect(try poller.poll(timeout: patience) == [1])
        #expect(poller.isReady(1) && !poller.isReady(0))
        _ = try busy.receive()
        #expect(try poller.poll(timeout: .milliseconds(50)) == [])
    }
}

@Suite struct Routing {
    @Test func routerRoutesRepliesByIdentity() throws {
        let context = try ZeroMQContext()
        let router = try context.socket(.router)
        try router.set(.routerMandatory, 1)
        let endpoint = try router.bind("tcp://127.0.0.1:*")

        var dealers: [String: ZeroMQSocket] = [:]
        for name in ["worker-a", "worker-b"] {
            let dealer = try context.socket(.dealer)
            try dealer.setRoutingID(Array(name.utf8))
            try dealer.configure(linger: .zero)
            try dealer.connect(endpoint)
            try dealer.send(multipart: [[], Array("READY \(name)".utf8)])
            dealers[name] = dealer
        }
        for _ in 0..<2 {
            let frames = try #require(try router.receiveMultipart(timeout: patience))
            #expect(frames.count == 3)
            let identity = text(frames[0])
            #expect(texts(frames).dropFirst() == ["", "READY \(identity)"])
            try router.send(multipart: [frames[0].bytes, [], Array("ASSIGN to \(identity)".utf8)])
        }
        for (name, dealer) in dealers {
            #expect(texts(try dealer.receiveMultipart(timeout: patience)) == ["", "ASSIGN to \(name)"])
        }
        // ROUTER_MANDATORY makes a send to an unknown identity an error, not a silent drop.
        #expect(throws: ZeroMQError.self) {
            try router.send(multipart: [Array("nobody".utf8), [], Array("lost".utf8)])
        }
    }

    /// Ids of up to 8 bytes are kept in a word, longer ones as bytes: both must round-trip
    /// through receiveRoutedIfReady and send(_:routedTo:), and libzmq's own 5-byte ids too.
    /// Frames equal to a shared one come as it, the rest (near misses too) as they were sent.
    @Test func routingIDsOfEveryLengthRoundTrip() throws {
        let context = try ZeroMQContext()
        let router = try context.socket(.router)
        try router.set(.routerMandatory, 1)
        let endpoint = try router.bind("tcp://127.0.0.1:*")
        let chosen: [[UInt8]?] = [nil, [7], Array("12345678".utf8), Array("a-routing-id-of-24-bytes".utf8), [9, 0, 0]]
        var dealers: [ZeroMQSocket] = []
        for (index, id) in chosen.enumerated() {
            let dealer = try context.socket(.dealer)
            if let id { try dealer.setRoutingID(id) }
            try dealer.configure(linger: .zero)
            try dealer.connect(endpoint)
            try dealer.send(multipart: [Array("from \(index)".utf8), [UInt8(index)]])
            dealers.append(dealer)
        }
        var seen: [RoutingID: Int] = [:]
        let deadline = ContinuousClock.now + patience
        while seen.count < chosen.count, ContinuousClock.now < deadline {
            let shared = [[0], [2], Array("from 1".utf8), Array("from 3x".utf8), Array("from ".utf8), [4, 0]]
            guard let (routingID, frames) = try router.receiveRoutedIfReady(shared: shared) else {
                _ = try router.poll(for: .readable, timeout: .milliseconds(100))
                continue
            }
            let index = Int(try #require(frames.last?.first))
            #expect(frames == [Array("from \(index)".utf8), [UInt8(index)]])
            if let id = chosen[index] { #expect(routingID.bytes == id) } else { #expect(routingID.bytes.count == 5) }
            #expect(RoutingID(routingID.bytes) == routingID)
            seen[routingID] = index
            try router.send([Array("to \(index)".utf8)], routedTo: routingID)
        }
        #expect(seen.count == chosen.count)
        for (index, dealer) in dealers.enumerated() {
            #expect(texts(try dealer.receiveMultipart(timeout: patience)) == ["to \(index)"])
        }
        // The length is part of the id: [1] and [1, 0] share a word but are different peers.
        #expect(RoutingID([1]) != RoutingID([1, 0]))
        #expect(RoutingID([0x0a, 0xff]).description == "0aff")
        #expect(throws: ZeroMQError.self) { try router.send([[1]], routedTo: RoutingID(Array("nobody".utf8))) }
    }
}

@Suite struct Security {
    private func exchange(serverKeys: CurveKeyPair, clientBelieves serverKey: String, waiting: Duration) throws -> String? {
        let context = try ZeroMQContext()
        let server = try context.socket(.pull)
        try server.makeCurveServer(secretKey: serverKeys.secretKey)
        let endpoint = try server.bind("tcp://127.0.0.1:*")
        let client = try context.socket(.push)
        try client.configure(linger: .zero)
        try client.makeCurveClient(serverPublicKey: serverKey, keyPair: try CurveKeyPair.generate())
        try client.connect(endpoint)
        try client.send(Array("secret payload".utf8))
        return try server.receive(timeout: waiting).map(text)
    }

    @Test func curveHandshakeSucceedsWithTheRightServerKey() throws {
        let keys = try CurveKeyPair.generate()
        // A connect, a four-step handshake over two I/O threads and a delivery: room for a loaded host.
        #expect(try exchange(serverKeys: keys, clientBelieves: keys.publicKey, waiting: .seconds(10)) == "secret payload")
    }

    @Test func clientWithTheWrongServerKeyGetsNothingThrough() throws {
        let keys = try CurveKeyPair.generate()
        let impostor = try CurveKeyPair.generate()
        #expect(try exchange(serverKeys: keys, clientBelieves: impostor.publicKey, waiting: .seconds(1)) == nil)
    }

    @Test func keysAreZ85AndThePublicKeyDerivesFromTheSecret() throws {
        #expect(ZeroMQLibrary.hasCurve)
        let keys = try CurveKeyPair.generate()
        #expect(keys.publicKey.utf8.count == 40 && keys.secretKey.utf8.count == 40)
        #expect(try CurveKeyPair.publicKey(forSecretKey: keys.secretKey) == keys.publicKey)
        #expect(try CurveKeyPair.parseKeyText("  \(keys.publicKey)\n", role: "public") == keys.publicKey)
        #expect(throws: CurveKeyError.self) { try CurveKeyPair.validate("short", role: "public") }
        // '"' is not in the Z85 alphabet.
        #expect(throws: CurveKeyError.self) {
            try CurveKeyPair.validate(String(repeating: "\"", count: 40), role: "secret")
        }
    }
}

@Suite struct Errors {
    @Test func errorsNameTheOperationAndZmqStrerror() throws {
        let context = try ZeroMQContext()
        let first = try context.socket(.pull)
        let endpoint = try first.bind("tcp://127.0.0.1:*")
        let second = try context.socket(.pull)
        let error = try #require(throws: ZeroMQError.self) { try second.bind(endpoint) }
        #expect(error.operation == "zmq_bind(\(endpoint))")
        #expect(error.description.contains("Address already in use"))

        let bad = try #require(throws: ZeroMQError.self) { try second.bind("nonsense://x") }
        #expect(bad.description.hasPrefix("zmq_bind(nonsense://x) failed: "))
    }

    @Test func closedSocketsFailCleanly() throws {
        let context = try ZeroMQContext()
        let socket = try context.socket(.push)
        socket.close()
        socket.close()
        #expect(throws: ZeroMQError.self) { try socket.send(Array("x".utf8)) }
    }

    @Test func oversizedMessagesAreDroppedByMaxMessageSize() throws {
        let context = try ZeroMQContext()
        let pull = try context.socket(.pull)
        try pull.setMaxMessageSize(100)
        let endpoint = try pull.bind("tcp://127.0.0.1:*")
        let push = try context.socket(.push)
        try push.configure(linger: .zero)
        try push.connect(endpoint)
        try push.send([UInt8](repeating: 1, count: 1000))
        #expect(try pull.receive(timeout: .milliseconds(500)) == nil)
    }

    @Test func optionsRoundTrip() throws {
        let context = try ZeroMQContext()
        let socket = try context.socket(.dealer)
        try socket.configure(linger: .milliseconds(250), sendHighWaterMark: 7, receiveHighWaterMark: 9)
        try socket.setHeartbeats(interval: .seconds(1), timeout: .seconds(3), ttl: .seconds(6))
        #expect(try socket.get(.linger) == 250)
        #expect(try socket.get(.sendHighWaterMark) == 7)
        #expect(try socket.get(.receiveHighWaterMark) == 9)
        #expect(try socket.get(.heartbeatInterval) == 1000)
        #expect(try socket.get(.heartbeatTimeout) == 3000)
        #expect(try socket.get(.tcpKeepalive) == -1)
        // Whole seconds, at least one.
        try socket.setTCPKeepalive(idle: .seconds(3), interval: .milliseconds(400), count: 3)
        #expect(try socket.get(.tcpKeepalive) == 1)
        #expect(try socket.get(.tcpKeepaliveIdle) == 3)
        #expect(try socket.get(.tcpKeepaliveInterval) == 1)
        #expect(try socket.get(.tcpKeepaliveCount) == 3)
    }
}
