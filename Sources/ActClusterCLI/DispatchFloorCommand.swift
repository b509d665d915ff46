import ArgumentParser
import ClusterProtocol
import Coordinator
import Foundation
import Platform
import ZeroMQ

/// `actcluster bench dispatch-floor` (hidden; `bench dispatch --floor` starts it): the reference
/// for the coordinator's dispatch. A libzmq ROUTER with the coordinator's socket options that
/// answers every READY and DONE with one pre-encoded ASSIGN at once, and ACKs the DONEs every
/// 100 ms (the coordinator's commit interval while only ACKs that may linger wait, as in the
/// bench), each held to leave with the peer's next ASSIGN as the coordinator holds it
/// (``HeldAcknowledgements``); no state, journal, planning or decoding beyond the command byte. What it costs per unit, and the lease latency it gives, is what
/// libzmq and this machine cost before the coordinator does any work.
struct DispatchFloorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatch-floor",
        abstract: "The libzmq floor that bench dispatch --floor compares the coordinator with.",
        shouldDisplay: false
    )

    @Option(help: "Endpoint to bind.")
    var bind: String

    @Option(help: "DONEs to take before SHUTDOWN.")
    var units: Int

    @Option(help: "Scheduler slice of this thread and libzmq's I/O thread, in microseconds, as the coordinator's --scheduler-slice (0 keeps the kernel's).")
    var schedulerSlice = 0

    func run() throws {
        let context = try ZeroMQContext()
        let socket = try context.socket(.router)
        try Coordinator.configureWorkerSocket(
            socket, heartbeatInterval: ClusterWire.Defaults.heartbeatInterval,
            livenessPeriod: ClusterWire.Defaults.heartbeatInterval * ClusterWire.Defaults.liveness)
        do {
            _ = try socket.bind(bind)
        } catch {
            throw CommandFailure("cannot listen on \(bind): \(error.reason)")
        }
        // Like for like: the same scheduling as the coordinator's loop and I/O thread.
        if schedulerSlice > 0 { _ = Coordinator.requestSchedulerSlice(.microseconds(schedulerSlice)) }

        // One unit of one 40-byte line, as the bench's corpus has; every lease gets the same.
        let settings = UnitSettings(
            hooks: [nullWorkerHook], context: 8, model: ModelReference(path: "model", name: "model", configSHA256: [UInt8](repeating: 0, count: 32)),
            outputDirectory: "out")
        let plan = UnitPlan(unit: 0, fileIndex: 0, byteRange: 0..<41, firstDocumentID: 0, firstLine: 1, lineCount: 1, textBytes: 40)
        let assignment = AssignmentTemplate(
            run: 1, heartbeatInterval: ClusterWire.Defaults.heartbeatInterval, liveness: ClusterWire.Defaults.liveness,
            encodedSettings: Assignment.encodedSettings(settings), file: "corpus.txt", plan: plan,
            lines: [UnitLine(rawBytes: 41, content: .success(String(repeating: "x", count: 40)))]
        ).frames(lease: 1, attempt: 1)
        let ack = CoordinatorMessage.ack(Acknowledgement(unit: 0, lease: 1, outcome: .accepted)).encode()

        var peers = Set<RoutingID>()
        var assigned = 0, done = 0
        var unacknowledged: [RoutingID] = []
        var poller = ZeroMQPoller()
        poller.add(socket)
        let clock = ContinuousClock()
        var lastAcks = clock.now
        var held = HeldAcknowledgements<[[UInt8]]>()
        let linger = ClusterWire.Defaults.heartbeatInterval / 4
        let ackInterval = CoordinatorConfiguration.defaultLingeringCommitInterval
        func transmit(_ acks: HeldAcknowledgements<[[UInt8]]>.Held, to peer: RoutingID) throws {
            for ack in acks { try socket.send(ack, routedTo: peer) }
        }
        func send(_ frames: [[UInt8]], to peer: RoutingID) throws {
            if let acks = held.take(for: peer) { try transmit(acks, to: peer) }
            try socket.send(frames, routedTo: peer)
        }
        while done < units {
            _ = try poller.poll(timeout: ackInterval)
            while let (peer, frames) = try socket.receiveRoutedIfReady(shared: Coordinator.sharedFrames) {
                guard frames.count >= 2, frames[1].count == 1, let command = ClusterWire.Command(rawValue: frames[1][0]) else { continue }
                switch command {
                case .ready: peers.insert(peer)
                case .done:
                    unacknowledged.append(peer)
                    done += 1
                default: continue
                }
                if assigned < units {
                    assigned += 1
                    try send(assignment, to: peer)
                }
            }
            let now = clock.now
            if now - lastAcks >= ackInterval {
                lastAcks = now
                for peer in unacknowledged { held.hold(ack, for: peer, now: now) }
                unacknowledged.removeAll(keepingCapacity: true)
            }
            while let (peer, acks) = held.takeExpired(heldSince: now - linger) { try transmit(acks, to: peer) }
        }
        for peer in unacknowledged { held.hold(ack, for: peer, now: clock.now) }
        for (peer, acks) in held.takeAll() { try transmit(acks, to: peer) }
        let shutdown = CoordinatorMessage.shutdown(reason: "the run is complete").encode()
        for peer in peers { try socket.send(shutdown, routedTo: peer) }
        // The linger delivers the SHUTDOWNs when the socket closes.
    }
}
