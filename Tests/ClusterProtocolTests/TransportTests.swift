import ClusterProtocol
import Shards
import Testing
import ZeroMQ

private let patience: Duration = .seconds(5)

private func receive(_ socket: ZeroMQSocket) throws -> [[UInt8]] {
    let frames = try #require(try socket.receiveMultipart(timeout: patience))
    return frames.map(\.bytes)
}

/// A worker and a coordinator exchange one unit's conversation over real sockets: READY,
/// ASSIGN, HEARTBEAT both ways, DONE, ACK, a hostile message in between, SHUTDOWN.
private func conversation(endpoint: String, context: ZeroMQContext, coordinator: ZeroMQSocket) throws {
    let worker = try context.socket(.dealer)
    try worker.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.workerMaxMessageBytes)
    try worker.connect(endpoint)
    let intruder = try context.socket(.dealer)
    try intruder.configure(linger: .zero)
    try intruder.connect(endpoint)

    try worker.send(multipart: WorkerMessage.ready(Ready(worker: "w1", threads: 2)).encode())
    var (envelope, frames) = try Envelope.split(try receive(coordinator))
    #expect(try WorkerMessage.decode(frames: frames) == .ready(Ready(worker: "w1", threads: 2)))
    let peer = envelope

    // Garbage and a wrong-version message from another peer: refused, never acted on.
    try intruder.send(multipart: [Array("ACTW02".utf8), [0x04], [1, 2, 3]])
    try intruder.send(multipart: [[0xFF, 0x00], [], [0x7F]])
    for _ in 0..<2 {
        (envelope, frames) = try Envelope.split(try receive(coordinator))
        #expect(envelope != peer)
        #expect(throws: ProtocolError.self) { _ = try WorkerMessage.decode(frames: frames) }
    }

    try coordinator.send(multipart: peer.wrap(CoordinatorMessage.assign(Samples.assignment).encode()))
    guard case .assign(let assignment) = try CoordinatorMessage.decode(frames: try receive(worker)) else {
        Issue.record("expected ASSIGN")
        return
    }
    #expect(assignment == Samples.assignment)

    try worker.send(multipart: WorkerMessage.heartbeat(WorkerHeartbeat(worker: "w1", lease: assignment.lease, unit: assignment.unit, tokens: 99)).encode())
    (envelope, frames) = try Envelope.split(try receive(coordinator))
    #expect(envelope == peer)
    #expect(try WorkerMessage.decode(frames: frames) == .heartbeat(WorkerHeartbeat(worker: "w1", lease: 42, unit: 17, tokens: 99)))
    try coordinator.send(multipart: peer.wrap(CoordinatorMessage.heartbeat(CoordinatorHeartbeat(run: assignment.run)).encode()))
    #expect(try CoordinatorMessage.decode(frames: try receive(worker)) == .heartbeat(CoordinatorHeartbeat(run: 0xC0FFEE)))

    let done = Samples.done(unit: assignment.unit, lease: assignment.lease, width: 384)
    try worker.send(multipart: WorkerMessage.done(done).encode())
    (envelope, frames) = try Envelope.split(try receive(coordinator))
    #expect(try WorkerMessage.decode(frames: frames) == .done(done))
    try coordinator.send(multipart: peer.wrap(CoordinatorMessage.ack(Acknowledgement(unit: done.unit, lease: done.lease, outcome: .accepted)).encode()))
    #expect(try CoordinatorMessage.decode(frames: try receive(worker)) == .ack(Acknowledgement(unit: 17, lease: 42, outcome: .accepted)))

    try coordinator.send(multipart: peer.wrap(CoordinatorMessage.shutdown(reason: "all units are done").encode()))
    #expect(try CoordinatorMessage.decode(frames: try receive(worker)) == .shutdown(reason: "all units are done"))
}

/// `actcluster status` over REQ: the ROUTER sees an empty delimiter and must send it back.
private func statusExchange(endpoint: String, context: ZeroMQContext, server: ZeroMQSocket) throws {
    let client = try context.socket(.request)
    try client.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.statusReplyMaxMessageBytes)
    try client.connect(endpoint)
    try client.send(multipart: StatusMessage.request(StatusRequest()).encode())
    let (envelope, frames) = try Envelope.split(try receive(server))
    #expect(envelope.delimited)
    #expect(try StatusMessage.decode(frames: frames) == .request(StatusRequest()))
    let report = Samples.statusMessages.last!
    try server.send(multipart: envelope.wrap(report.encode()))
    #expect(try StatusMessage.decode(frames: try receive(client)) == report)
}

/// Worker PUSH to trainer PULL: batches arrive whole and decode.
private func batchStream(endpoint: String, context: ZeroMQContext, pull: ZeroMQSocket) throws {
    let push = try context.socket(.push)
    try push.configure(linger: .seconds(1))
    try push.connect(endpoint)
    for dtype in ShardDType.allCases {
        let batch = try Samples.batch(dtype: dtype, rows: 300, width: 64)
        try push.send(multipart: batch.encode())
        let received = try ActivationBatch.decode(frames: try receive(pull))
        #expect(received == batch)
        #expect(try received.rows().count == 300)
    }
}

@Suite(.serialized) struct Transport {
    @Test func inproc() throws {
        let context = try ZeroMQContext()
        let coordinator = try context.socket(.router)
        try coordinator.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.coordinatorMaxMessageBytes)
        try coordinator.bind("inproc://coordinator")
        try conversation(endpoint: "inproc://coordinator", context: context, coordinator: coordinator)

        let status = try context.socket(.router)
        try status.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.statusRequestMaxMessageBytes)
        try status.bind("inproc://status")
        try statusExchange(endpoint: "inproc://status", context: context, server: status)

        let pull = try context.socket(.pull)
        try pull.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.trainerMaxMessageBytes)
        try pull.bind("inproc://trainer")
        try batchStream(endpoint: "inproc://trainer", context: context, pull: pull)
    }

    @Test func liveTCPOnOSChosenPorts() throws {
        let context = try ZeroMQContext()
        let coordinator = try context.socket(.router)
        try coordinator.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.coordinatorMaxMessageBytes)
        let endpoint = try coordinator.bind("tcp://127.0.0.1:*")
        try conversation(endpoint: endpoint, context: context, coordinator: coordinator)

        let status = try context.socket(.router)
        try status.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.statusRequestMaxMessageBytes)
        try statusExchange(endpoint: try status.bind("tcp://127.0.0.1:*"), context: context, server: status)

        let pull = try context.socket(.pull)
        try pull.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.trainerMaxMessageBytes)
        try batchStream(endpoint: try pull.bind("tcp://127.0.0.1:*"), context: context, pull: pull)
    }

    /// Over TCP, a frame above the socket's maximum message size never reaches the
    /// application: libzmq drops the connection, and a well-behaved peer still gets through.
    @Test func oversizedStatusRequestIsDroppedByTheSocket() throws {
        let context = try ZeroMQContext()
        let status = try context.socket(.router)
        try status.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.statusRequestMaxMessageBytes)
        let endpoint = try status.bind("tcp://127.0.0.1:*")
        let hostile = try context.socket(.dealer)
        try hostile.configure(linger: .zero)
        try hostile.connect(endpoint)
        try hostile.send(multipart: [Array("ACTS01".utf8), [0x21], [UInt8](repeating: 0x41, count: 1 << 20)])
        #expect(try status.receiveMultipart(timeout: .milliseconds(300)) == nil)
        try statusExchange(endpoint: endpoint, context: context, server: status)
    }
}
