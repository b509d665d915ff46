import ClusterProtocol
import Corpus
import Foundation
import Logging
import Monitoring
import Platform
import Shards
import ZeroMQ

/// The coordinator: plans units from the corpus as workers need them, leases them over a
/// ROUTER socket, tracks liveness, journals every change before acting on it, and writes the
/// manifest when every unit is done or failed. One thread owns every socket and the state.
///
/// Each pass of the loop: wait for messages (or the next timer, or the end of a journal
/// commit), handle a batch of them against ``CoordinatorState`` (appending the events that
/// changed it to the journal), expire leases, plan and assign units, and hand the events to the
/// journal thread as one record (group commit) unless a commit is still in flight or began
/// less than ``CoordinatorConfiguration/commitInterval`` ago (longer while no worker waits
/// for a reply). Replies and file deletions that follow from events wait in the outbox until
/// the commit that holds those events is durable (write-ahead); the loop meanwhile goes on.
/// ASSIGN is the exception: a lease is soft state, so it waits only for its id's reservation.
/// An ACK that the worker does not wait for may then wait a little longer, to leave with the
/// worker's next message (``HeldAcknowledgements``).
public final class Coordinator {
    public let configuration: CoordinatorConfiguration
    /// The worker endpoint actually bound (a port of 0 is resolved).
    public private(set) var workerEndpoint = ""
    public private(set) var statusEndpoint: String?

    private let logger: Logger
    private let clock = ContinuousClock()
    private let startedAt: ContinuousClock.Instant
    private var state: CoordinatorState
    private let journal: Journal
    private let planner: UnitPlanner
    private let unitReader: UnitReader
    private let context: ZeroMQContext
    private let workerSocket: ZeroMQSocket
    private let statusSocket: ZeroMQSocket?
    private let authenticator: CurveAuthenticator?
    private let stopRequests: () -> Int
    /// From the configuration, worked out once: they are used per message.
    private let livenessPeriod: Duration
    private let ackLinger: Duration

    private var sessions: [RoutingID: WorkerSession] = [:]
    /// Workers waiting for a unit, in the order they asked (sessions, not ids: a lease is
    /// granted without looking the worker up again).
    private var idleQueue: [WorkerSession] = []
    private var trackers: [LeaseID: LeaseTracker] = [:]
    /// ASSIGNs of planned units not yet leased, encoded but for the lease as they are planned,
    /// so a first ASSIGN needs no second read of the corpus. In unit order: units planned here
    /// are leased in the order planned (requeued units, which go first, have none).
    private var plannedAssignments = FIFOQueue<AssignmentTemplate>()
    /// Replies and file deletions waiting for the journal to hold the events they follow from
    /// (``Journal/durableEvents`` reaching `after`), in the order queued.
    private var outbox = FIFOQueue<QueuedMessage>()
    /// Messages in the outbox per peer: a message that could go at once still waits behind them.
    private var queuedPerPeer: [RoutingID: Int] = [:]
    /// Messages in the outbox that a worker may be waiting for (all but ACKs that linger):
    /// while there are any, commits start ``CoordinatorConfiguration/commitInterval`` apart,
    /// else ``CoordinatorConfiguration/lingeringCommitInterval``.
    private var waitedForInOutbox = 0
    private var deletions: [(name: String, after: Int)] = []
    private var heldAcks = HeldAcknowledgements<Acknowledgement>()
    /// An ACK's frames, encoded into as each ACK leaves (no allocation per ACK).
    private var ackFrames: [[UInt8]] = []
    /// The ASSIGN frames, rewritten per lease; one queued for later keeps its own copy.
    private var assignFrames: [[UInt8]] = []
    private let syncer: JournalSyncer
    /// Lease ids up to this are durably reserved by this process: as of the last finished
    /// commit, and as of the commit in flight.
    private var durableReservation: LeaseID = 0
    private var inFlightReservation: LeaseID = 0
    /// The reservation this process made (0: none yet; ids left from before a restart are skipped).
    private var reservedHere: LeaseID = 0
    private var throughput = ThroughputMeter()
    private var rejectedMessages = 0
    private var expiredLeases = 0
    private var draining = false
    private var drainDeadline: ContinuousClock.Instant?
    private var lastTimerPass: ContinuousClock.Instant
    private var lastLoopPass: ContinuousClock.Instant
    /// When the loop's current pass began (after its wait).
    private var passStarted: ContinuousClock.Instant
    private var lastCommitStart: ContinuousClock.Instant
    private var lastProgressLog: ContinuousClock.Instant
    private var bytesDone: Int64 = 0
    private var tokensDoneHere = 0
    /// Sizes of the corpus files at start, for the ETA.
    private let corpusFileBytes: [Int64]

    /// Recovers the run from the journal in the output folder (or starts it) and binds the
    /// sockets. `stopRequests` counts SIGINT/SIGTERM (the CLI passes ``ShutdownSignals``):
    /// one more than at start drains, two more stop at once.
    public init(configuration: CoordinatorConfiguration, logger: Logger, stopRequests: @escaping () -> Int = { 0 }) throws {
        self.configuration = configuration
        self.logger = logger
        self.stopRequests = stopRequests
        livenessPeriod = configuration.livenessPeriod
        ackLinger = configuration.effectiveAckLinger
        startedAt = clock.now
        lastTimerPass = startedAt
        lastLoopPass = startedAt
        passStarted = startedAt
        lastCommitStart = startedAt
        lastProgressLog = startedAt
        let run = configuration.run

        try FileManager.default.createDirectory(atPath: configuration.outputDirectory, withIntermediateDirectories: true)
        let (state, journal, replay) = try CoordinatorState.recover(journalAt: configuration.journalPath, run: run)
        self.state = state
        self.journal = journal
        planner = UnitPlanner(resuming: state)
        unitReader = UnitReader(corpus: run.corpus)
        corpusFileBytes = run.corpus.paths.map { path in (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? nil ?? 0 }
        if replay.created {
            logger.info("run_started", metadata: ["run": "\(String(state.run.run, radix: 16))", "journal": "\(journal.path)"])
        } else {
            logger.info(
                "run_resumed",
                metadata: [
                    "run": "\(String(state.run.run, radix: 16))", "journal": "\(journal.path)", "records": "\(replay.records)",
                    "torn_bytes_cut": "\(replay.truncatedBytes)", "units_planned": "\(state.plannedCount)", "units_done": "\(state.done.count)",
                    "units_failed": "\(state.poisoned.count)", "leases_restored": "\(state.leases.count)",
                ])
        }

        context = try ZeroMQContext()
        if let curve = configuration.curve, let allowed = curve.allowedClientKeys {
            authenticator = try CurveAuthenticator(context: context, allowedClientKeys: allowed)
        } else {
            authenticator = nil
        }
        workerSocket = try context.socket(.router)
        try Self.configureWorkerSocket(workerSocket, heartbeatInterval: configuration.heartbeatInterval, livenessPeriod: livenessPeriod)
        if let curve = configuration.curve { try workerSocket.makeCurveServer(secretKey: curve.secretKey) }
        do {
            workerEndpoint = try workerSocket.bind(configuration.bind)
        } catch {
            throw CoordinatorError("cannot listen for workers on \(configuration.bind): \(error.reason); choose another --bind endpoint")
        }
        if let statusBind = configuration.statusBind {
            let socket = try context.socket(.router)
            try socket.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.statusRequestMaxMessageBytes)
            if let curve = configuration.curve { try socket.makeCurveServer(secretKey: curve.secretKey) }
            do {
                statusEndpoint = try socket.bind(statusBind)
            } catch {
                throw CoordinatorError("cannot listen for status clients on \(statusBind): \(error.reason); choose another --status-bind endpoint")
            }
            statusSocket = socket
        } else {
            statusSocket = nil
        }

        // Last: once its thread runs, only deinit (of a fully initialised coordinator) stops it.
        syncer = try JournalSyncer()
        if !state.completed {
            // A new block of lease ids at once: the ids the last one left unjournaled (their
            // ASSIGN may have left before a crash) are skipped before any report is handled.
            try reserveLeases()
            try journalOperation { try journal.sync() }
            durableReservation = reservedHere
        }

        // Leases from before a restart: no worker has spoken for them yet.
        let deadline = clock.now + livenessPeriod
        for (lease, live) in state.leases {
            trackers[lease] = LeaseTracker(unit: live.unit, holder: nil, deadline: deadline, claimed: false, started: clock.now)
        }
        logger.info(
            "coordinator_listening",
            metadata: [
                "endpoint": "\(workerEndpoint)", "status_endpoint": "\(statusEndpoint ?? "none")",
                "curve": "\(configuration.curve == nil ? "off" : configuration.curve?.allowedClientKeys == nil ? "server_key" : "allow_list")",
                "hooks": "\(run.settings.hooks.joined(separator: ","))", "output": "\(configuration.outputDirectory)",
            ])
    }

    /// The worker-facing ROUTER's options (CURVE aside): `bench dispatch`'s floor sets the same.
    public static func configureWorkerSocket(_ socket: ZeroMQSocket, heartbeatInterval: Duration, livenessPeriod: Duration) throws(ZeroMQError) {
        try socket.configure(
            linger: .seconds(1), sendHighWaterMark: 0, receiveHighWaterMark: 0, maxMessageSize: ClusterWire.Limits.coordinatorMaxMessageBytes)
        try socket.set(.routerMandatory, 1)
        // Workers and leases are judged by the protocol's HEARTBEAT; here the transport only has
        // to reap dead connections. Not with ZMTP heartbeats: libzmq cancels each PING's timeout
        // timer (on the next message in) by a scan of all its timers, one per worker, so with
        // 1000 workers PINGs took 6% of its I/O thread. Workers still PING the coordinator.
        try socket.setTCPKeepalive(idle: livenessPeriod, interval: heartbeatInterval, count: 3)
    }

    deinit {
        syncer.stop()
        statusSocket?.close()
        workerSocket.close()
        authenticator?.socket.close()
        journal.close()
    }

    // MARK: The loop

    /// Runs until the run completes or a signal drains it.
    public func run() throws -> CoordinatorOutcome {
        let baseline = stopRequests()
        requestSchedulerSlice()
        if state.completed {
            logger.info("run_already_complete", metadata: ["units_done": "\(state.done.count)", "units_failed": "\(state.poisoned.count)"])
            try writeManifest()
            try serveShutdown()
            return .completed(summary(manifest: true))
        }
        var poller = makePoller()
        while true {
            let requests = stopRequests() - baseline
            if requests >= 1 && !draining { beginDrain() }
            if draining && (requests >= 2 || clock.now >= drainDeadline!) { releaseAll(reason: requests >= 2 ? "the coordinator was stopped" : "the coordinator's drain timed out") }

            _ = try poller.poll(timeout: pollTimeout())
            passStarted = clock.now
            try finishCommit()
            releaseOutbox(limit: Self.releasedPerPass)
            sendExpiredAcks()
            try answerAuthentication()
            try answerStatusRequests()
            var handled = 0
            while handled < configuration.messagesPerCommit, let (routingID, frames) = try workerSocket.receiveRoutedIfReady(shared: Self.sharedFrames) {
                handle(frames, from: routingID)
                handled += 1
                // Workers that asked early in a long batch need not wait for its end.
                if handled % Self.assignEvery == 0 && !draining {
                    try planAhead()
                    try assign()
                }
            }
            try timerPass()
            if !draining {
                try planAhead()
                try assign()
            }
            try startCommit()
            // Nothing in flight: everything appended is durable, so nothing may wait.
            if !journal.commitInFlight && (!deletions.isEmpty || !outbox.isEmpty) { releaseOutbox(limit: Self.releasedPerPass) }

            if state.allUnitsFinished {
                try complete()
                return .completed(summary(manifest: true))
            }
            if draining && trackers.isEmpty {
                try commit()
                logger.notice("drained", metadata: metadataCounts())
                return .drained(summary(manifest: false))
            }
        }
    }

    /// How libzmq names its I/O threads (`ZMQbg/IO/0`, …), once they run.
    public static let ioThreadPrefix = "ZMQbg/IO/"

    /// The calling thread (the one that runs the loop) and libzmq's I/O threads ask for
    /// `slice`; the I/O threads are waited for until they have named themselves. Returns how
    /// many threads took it, and why the kernel refused, if it did. `bench dispatch-floor`
    /// asks the same way.
    public static func requestSchedulerSlice(_ slice: Duration) -> (threads: Int, failure: String?) {
        let loopFailure = SchedulerSlice.request(slice)
        let io = SchedulerSlice.request(slice, threadsNamed: ioThreadPrefix, wait: .milliseconds(500))
        return ((loopFailure == nil ? 1 : 0) + io.threads, loopFailure ?? io.failure)
    }

    /// ``CoordinatorConfiguration/schedulerSlice`` for the loop and libzmq's I/O threads.
    private func requestSchedulerSlice() {
        guard let slice = configuration.schedulerSlice, slice > .zero else { return }
        let (threads, failure) = Self.requestSchedulerSlice(slice)
        let microseconds: Logger.MetadataValue = "\(slice.wholeNanoseconds / 1000)"
        if let failure {
            logger.warning("scheduler_slice_refused", metadata: ["microseconds": microseconds, "reason": "\(failure)"])
        } else {
            logger.info("scheduler_slice", metadata: ["microseconds": microseconds, "threads": "\(threads)"])
        }
    }

    /// Every socket the loop waits on.
    private func makePoller() -> ZeroMQPoller {
        var poller = ZeroMQPoller()
        poller.add(workerSocket)
        if let statusSocket { poller.add(statusSocket) }
        if let authenticator { poller.add(authenticator.socket) }
        poller.add(descriptor: syncer.wakeDescriptor)
        return poller
    }

    /// How long the loop may wait for messages: not at all while released messages wait for
    /// their slice, until a buffered commit is due at the latest.
    private func pollTimeout() -> Duration {
        if outboxHasReleasable { return .zero }
        guard !journal.commitInFlight, journal.bufferedEvents > 0 else { return .milliseconds(50) }
        return min(.milliseconds(50), max(.zero, lastCommitStart + commitInterval - clock.now))
    }

    private var commitInterval: Duration { waitedForInOutbox > 0 ? configuration.commitInterval : configuration.lingeringCommitInterval }

    /// Hands the buffered events to the journal thread, unless a commit is in flight or the
    /// last one began less than ``commitInterval`` ago (the events then go with the next one).
    private func startCommit() throws {
        guard !journal.commitInFlight, journal.bufferedEvents > 0, passStarted - lastCommitStart >= commitInterval else { return }
        guard let commit = try journalOperation({ try journal.prepareCommit() }) else { return }
        lastCommitStart = passStarted
        inFlightReservation = reservedHere
        syncer.submit(commit)
    }

    /// Takes a commit the journal thread finished; what waited for it goes out from now on,
    /// a slice per pass.
    private func finishCommit() throws {
        guard let (commit, error) = syncer.takeFinished() else { return }
        try finished(commit, error: error)
    }

    private func finished(_ commit: JournalCommit, error: (any Error)?) throws {
        try journalOperation { try journal.finishCommit(commit, error: error) }
        durableReservation = inFlightReservation
    }

    /// Makes the journal hold every event so far, then sends everything that waited for it,
    /// held ACKs too.
    private func commit() throws {
        if journal.commitInFlight {
            let (commit, error) = syncer.waitFinished()
            try finished(commit, error: error)
        }
        if journal.bufferedEvents > 0 {
            let reservation = reservedHere
            try journalOperation { try journal.sync() }
            durableReservation = reservation
        }
        releaseOutbox()
        for (peer, acks) in heldAcks.takeAll() { transmit(acks, to: peer, session: sessions[peer]) }
    }

    /// A message to send: encoded, or an ACK, which is encoded as it leaves. ACKs wait in the
    /// outbox for their sync and then often linger: small values wait better than three arrays.
    private enum Outgoing {
        case frames([[UInt8]])
        case ack(Acknowledgement)
    }

    private struct QueuedMessage {
        var routingID: RoutingID
        var message: Outgoing
        /// The lease an ASSIGN grants: given back if the send fails.
        var assigned: LeaseID?
        /// An ACK to hold rather than send once it may go.
        var lingers: Bool
        /// It may go once the journal holds this many events.
        var after: Int
    }

    private func journalOperation<T>(_ operation: () throws -> T) throws -> T {
        do {
            return try operation()
        } catch {
            throw CoordinatorError("cannot write the journal \(journal.path): \(error); fix the disk and restart with the same arguments")
        }
    }

    /// The outbox's next message may go: its events are durable.
    private var outboxHasReleasable: Bool { outbox.first.map { $0.after <= journal.durableEvents } ?? false }

    /// Messages the loop releases per pass. A slow sync can free thousands of ACKs at once;
    /// sent in one go they would hold back, for milliseconds, the messages that arrive meanwhile
    /// and the ASSIGNs that answer them.
    static let releasedPerPass = 64

    /// Sends the queued messages whose events are durable (up to `limit` of them), in order,
    /// and deletes the files whose events are durable.
    private func releaseOutbox(limit: Int = .max) {
        var released = 0
        while released < limit, outboxHasReleasable {
            released += 1
            let message = outbox.popFirst()!
            if let index = queuedPerPeer.index(forKey: message.routingID) {
                if queuedPerPeer.values[index] > 1 { queuedPerPeer.values[index] -= 1 } else { queuedPerPeer.remove(at: index) }
            }
            if !message.lingers { waitedForInOutbox -= 1 }
            if message.lingers, case .ack(let ack) = message.message {
                heldAcks.hold(ack, for: message.routingID, now: passStarted)
            } else {
                send(message.message, to: message.routingID, assigned: message.assigned)
            }
        }
        let durable = journal.durableEvents
        var kept = 0
        for deletion in deletions {
            guard deletion.after <= durable else {
                deletions[kept] = deletion
                kept += 1
                continue
            }
            let path = configuration.outputDirectory + "/" + deletion.name
            if unlink(path) == 0 { logger.debug("stray_deleted", metadata: ["file": "\(deletion.name)"]) }
        }
        deletions.removeLast(deletions.count - kept)
    }

    /// Sends a message, after the ACKs held for the same peer. `session`: the peer's, when the
    /// caller has it (else it is looked up).
    private func send(_ message: Outgoing, to routingID: RoutingID, assigned: LeaseID? = nil, session: WorkerSession? = nil) {
        let session = session ?? sessions[routingID]
        if let acks = heldAcks.take(for: routingID) { transmit(acks, to: routingID, session: session) }
        transmit(message, to: routingID, assigned: assigned, session: session)
    }

    /// A peer's held ACKs, in order; its session looked up once for all of them.
    private func transmit(_ acks: HeldAcknowledgements<Acknowledgement>.Held, to routingID: RoutingID, session: WorkerSession?) {
        for ack in acks { transmit(.ack(ack), to: routingID, session: session) }
    }

    /// Sends the held ACKs whose linger is over.
    private func sendExpiredAcks() {
        guard !heldAcks.isEmpty else { return }
        let cutoff = passStarted - ackLinger
        while let (peer, acks) = heldAcks.takeExpired(heldSince: cutoff) { transmit(acks, to: peer, session: sessions[peer]) }
    }

    /// `session`: the peer's (nil if it has none).
    private func transmit(_ message: Outgoing, to routingID: RoutingID, assigned: LeaseID? = nil, session: WorkerSession?) {
        do {
            switch message {
            case .frames(let frames):
                try workerSocket.send(frames, routedTo: routingID)
            case .ack(let ack):
                CoordinatorMessage.encodeAck(ack, into: &ackFrames)
                try workerSocket.send(ackFrames, routedTo: routingID)
            }
            // The loop pass's time is exact enough for when to heartbeat, and costs no clock read.
            session?.lastSent = passStarted
        } catch {
            // The peer is gone (ROUTER_MANDATORY) or its queue is full.
            logger.debug("send_failed", metadata: ["peer": "\(routingID)", "error": "\(error)"])
            if let session { dropSession(session, reason: "the connection is gone") }
            if let lease = assigned, let tracker = trackers[lease] {
                // Its ASSIGN never left: give the unit back without counting an attempt.
                release(lease, unit: tracker.unit, reason: "the worker disconnected before its assignment was sent")
            }
        }
    }

    /// Sends `message` once the journal holds every event appended so far (or the first
    /// `after` events), and after the messages queued for the same peer before it. An ACK
    /// that `lingers` is then held (``HeldAcknowledgements``) instead of sent.
    private func queue(_ message: CoordinatorMessage, to routingID: RoutingID, assigned: LeaseID? = nil, after: Int? = nil, lingers: Bool = false) {
        let outgoing: Outgoing
        if case .ack(let ack) = message { outgoing = .ack(ack) } else { outgoing = .frames(message.encode()) }
        queue(outgoing, to: routingID, assigned: assigned, after: after ?? journal.appendedEvents, lingers: lingers)
    }

    /// `lingers` applies to ACKs only.
    private func queue(_ message: Outgoing, to routingID: RoutingID, assigned: LeaseID? = nil, after: Int, lingers: Bool = false) {
        if after <= journal.durableEvents && queuedPerPeer[routingID] == nil {
            if lingers, case .ack(let ack) = message {
                heldAcks.hold(ack, for: routingID, now: passStarted)
            } else {
                send(message, to: routingID, assigned: assigned)
            }
            return
        }
        outbox.append(QueuedMessage(routingID: routingID, message: message, assigned: assigned, lingers: lingers, after: after))
        queuedPerPeer[routingID, default: 0] += 1
        if !lingers { waitedForInOutbox += 1 }
    }

    /// Whether the ACK of a report may linger: the report carried `ready`, and the worker takes
    /// the ASSIGN that answers it before the ACK, so it does not wait for the ACK.
    private func ackMayLinger(ready: Bool, outcome: Acknowledgement.Outcome, session: WorkerSession?) -> Bool {
        ready && outcome != .rejected && ackLinger > .zero && session?.assignBeforeAck == true
    }

    /// Applies an event and journals it if it changed the state.
    @discardableResult
    private func apply(_ event: CoordinatorEvent, decodedFrom body: [UInt8]? = nil) -> Transition {
        let transition = state.apply(event)
        if transition.changed {
            do {
                try journal.append(event, decodedFrom: body)
            } catch {
                // An event that cannot be journaled must not stay applied in memory only;
                // the state would diverge from what a restart rebuilds. Stop.
                fatalError("journal append failed after the state changed: \(error)")
            }
        }
        return transition
    }

    // MARK: Worker messages

    private func handle(_ frames: [[UInt8]], from routingID: RoutingID) {
        guard !frames.isEmpty else { return }
        let message: WorkerMessage
        do {
            message = try WorkerMessage.decode(frames: frames, knownHooks: state.run.settings.hooks)
        } catch {
            reject(routingID, "\(error)")
            return
        }
        let now = clock.now
        let session = sessions[routingID]
        session?.lastSeen = now
        switch message {
        case .ready(let ready): handleReady(ready, from: routingID, now: now)
        case .heartbeat(let heartbeat): handleHeartbeat(heartbeat, from: routingID, session: session, now: now)
        case .done(let done): handleDone(done, body: frames[2], from: routingID, session: session, now: now)
        case .failed(let failed): handleFailed(failed, from: routingID, session: session)
        }
    }

    private func reject(_ routingID: RoutingID, _ reason: String) {
        rejectedMessages += 1
        // A hostile peer can send garbage at line rate: log the first ones, then a sample.
        if rejectedMessages <= 100 || rejectedMessages % 1000 == 0 {
            logger.warning("message_rejected", metadata: ["peer": "\(routingID)", "reason": "\(reason)", "rejected_total": "\(rejectedMessages)"])
        }
    }

    /// A name is not a credential: READY naming a worker that another connection speaks for
    /// leaves that connection's session and lease alone. If that worker is dead, its lease
    /// expires with its heartbeats.
    private func handleReady(_ ready: Ready, from routingID: RoutingID, now: ContinuousClock.Instant) {
        let session: WorkerSession
        if let existing = sessions[routingID] {
            session = existing
            existing.name = ready.worker
        } else {
            session = WorkerSession(routingID: routingID, name: ready.worker, now: now)
            sessions[routingID] = session
            logger.info(
                "worker_joined",
                metadata: ["worker": "\(ready.worker)", "host": "\(ready.host ?? "")", "threads": "\(ready.threads)", "software": "\(ready.software ?? "")"])
        }
        session.threads = ready.threads
        session.assignBeforeAck = ready.assignBeforeAck
        becomeIdle(session, asking: "sent READY")
    }

    /// A DONE or FAILED with `ready`: the worker asks for its next unit with its report.
    /// `session`: the sender's, looked up when the report came.
    private func readyAfterReport(from routingID: RoutingID, session: WorkerSession?, lease: LeaseID) {
        guard let session, !session.dropped else {
            // Not known here (this coordinator restarted): READY carries what a session needs.
            queue(.disconnect(reason: "the coordinator does not know this worker; send READY"), to: routingID)
            return
        }
        // A resend that arrives after the next ASSIGN asks for nothing.
        guard session.lease == nil || session.lease == lease else { return }
        becomeIdle(session, asking: "asked for another unit")
    }

    /// The worker holds nothing now: any lease still live for it is lost, and it waits for work.
    private func becomeIdle(_ session: WorkerSession, asking: String) {
        if let lease = session.lease, let tracker = trackers[lease] {
            expire(lease, unit: tracker.unit, reason: "worker \(session.name) \(asking) while holding it")
        }
        session.lease = nil
        if draining || state.completed || session.shutdownSent {
            shutDown(session, reason: draining ? "the coordinator is draining" : "the run is complete")
        } else if !session.idle {
            session.idle = true
            idleQueue.append(session)
        }
    }

    private func handleHeartbeat(_ heartbeat: WorkerHeartbeat, from routingID: RoutingID, session: WorkerSession?, now: ContinuousClock.Instant) {
        guard let lease = heartbeat.lease, let unit = heartbeat.unit else {
            if session == nil {
                // Not known here (this coordinator restarted, or declared it lost): ask for READY.
                queue(.disconnect(reason: "the coordinator does not know this worker; send READY"), to: routingID)
            }
            return
        }
        guard var tracker = trackers[lease], tracker.unit == unit, state.leases[lease]?.worker == heartbeat.worker else {
            queue(.cancel(Cancel(unit: unit, lease: lease, reason: "lease \(lease) of unit \(unit) is not live")), to: routingID)
            return
        }
        if let holder = tracker.holder, holder != routingID, holderIsConnected(holder) {
            reject(routingID, "HEARTBEAT for lease \(lease) from a connection other than the one that holds it")
            return
        }
        let worker = session ?? adopt(routingID, name: heartbeat.worker, now: now)
        worker.lease = lease
        if !tracker.claimed { logger.info("lease_claimed", metadata: ["lease": "\(lease)", "unit": "\(unit)", "worker": "\(heartbeat.worker)"]) }
        tracker.claimed = true
        tracker.holder = routingID
        tracker.deadline = now + livenessPeriod
        if let tokens = heartbeat.tokens { tracker.tokens = tokens }
        trackers[lease] = tracker
    }

    /// Whether the connection that holds a lease is still there. A lease moves to another
    /// connection only once its holder's is gone (the worker reconnected): libzmq refuses a
    /// send to a peer whose connection closed (ROUTER_MANDATORY), so a HEARTBEAT to the holder
    /// tells, at most one per `probeInterval`.
    private func holderIsConnected(_ holder: RoutingID) -> Bool {
        guard let session = sessions[holder], !session.dropped else { return false }
        guard passStarted - session.lastSent >= Self.probeInterval else { return true }
        send(.frames(coordinatorHeartbeat), to: holder, session: session)
        return !session.dropped
    }

    /// At most one probe of a holder's connection per this interval, whatever a peer sends.
    static let probeInterval = Duration.milliseconds(100)

    private lazy var coordinatorHeartbeat = CoordinatorMessage.heartbeat(CoordinatorHeartbeat(run: state.run.run)).encode()

    /// A busy worker this coordinator has no session for (it restarted, or the worker
    /// reconnected): learn it. A session of its old connection is dropped by its own silence.
    private func adopt(_ routingID: RoutingID, name: String, now: ContinuousClock.Instant) -> WorkerSession {
        let session = WorkerSession(routingID: routingID, name: name, now: now)
        sessions[routingID] = session
        logger.info("worker_joined", metadata: ["worker": "\(name)", "busy": "true"])
        return session
    }

    private func handleDone(_ done: UnitDone, body: [UInt8], from routingID: RoutingID, session: WorkerSession?, now: ContinuousClock.Instant) {
        // A report that does not end the lease still shows the worker alive.
        func extendLease() {
            if let index = trackers.index(forKey: done.lease), trackers.values[index].unit == done.unit {
                trackers.values[index].deadline = now + livenessPeriod
            }
        }
        // Check files only for a report that could be accepted.
        if configuration.checkShardFiles, state.active[done.unit]?.wasIssued(done.lease) == true, let problem = missingFile(done) {
            extendLease()
            reject(routingID, "DONE of unit \(done.unit), lease \(done.lease): \(problem)")
            queue(.ack(Acknowledgement(unit: done.unit, lease: done.lease, outcome: .rejected, reason: problem)), to: routingID)
            if done.ready { readyAfterReport(from: routingID, session: session, lease: done.lease) }
            return
        }
        defer { if done.ready { readyAfterReport(from: routingID, session: session, lease: done.lease) } }
        let plan = state.active[done.unit]?.plan
        let transition = apply(.done(done), decodedFrom: body)
        let outcome = transition.acknowledgement ?? .rejected
        queue(
            .ack(Acknowledgement(unit: done.unit, lease: done.lease, outcome: outcome, reason: transition.reason)), to: routingID,
            lingers: ackMayLinger(ready: done.ready, outcome: outcome, session: session))
        let after = journal.appendedEvents
        deletions += transition.deleteFiles.map { ($0, after) }
        switch transition.verdict {
        case .applied:
            trackers[done.lease] = nil
            for revoked in transition.revoked {
                if let holder = trackers.removeValue(forKey: revoked.lease)?.holder {
                    queue(.cancel(Cancel(unit: revoked.unit, lease: revoked.lease, reason: "unit \(revoked.unit) was finished under lease \(done.lease)")), to: holder)
                    if sessions[holder]?.lease == revoked.lease { sessions[holder]?.lease = nil }
                }
                logger.info("lease_revoked", metadata: ["lease": "\(revoked.lease)", "unit": "\(revoked.unit)", "worker": "\(revoked.worker)"])
            }
            if let plan { bytesDone += plan.byteRange.upperBound - plan.byteRange.lowerBound }
            tokensDoneHere += done.tokens
            if session?.lease == done.lease { session?.lease = nil }
            session?.unitsDone += 1
            if done.timings.wall > 0 { session?.lastRate = Double(done.tokens) / done.timings.wall }
            logger.info(
                "unit_done",
                metadata: [
                    "unit": "\(done.unit)", "lease": "\(done.lease)", "worker": "\(session?.name ?? routingID.description)", "tokens": "\(done.tokens)",
                    "rows": "\(done.rows)", "documents": "\(done.documents)", "wall_s": "\(String(format: "%.2f", done.timings.wall))",
                    "units_done": "\(state.done.count)", "units_planned": "\(state.plannedCount)",
                ])
        case .ignored(let reason):
            extendLease()
            logger.info("report_ignored", metadata: ["unit": "\(done.unit)", "lease": "\(done.lease)", "reason": "\(reason)", "deleted_files": "\(transition.deleteFiles.count)"])
        case .rejected(let reason):
            extendLease()
            reject(routingID, reason)
        }
    }

    /// Why a DONE's files are not all there as reported, if they are not.
    private func missingFile(_ done: UnitDone) -> String? {
        for shard in done.shards {
            let path = configuration.outputDirectory + "/" + shard.file
            var info = stat()
            guard stat(path, &info) == 0 else {
                return "shard file \(shard.file) is not in \(configuration.outputDirectory) (is the output folder shared with the worker?)"
            }
            guard Int(info.st_size) == shard.bytes else { return "shard file \(shard.file) has \(info.st_size) bytes, the report says \(shard.bytes)" }
        }
        return nil
    }

    private func handleFailed(_ failed: UnitFailed, from routingID: RoutingID, session: WorkerSession?) {
        // Only the connection that holds a live lease can give it up: FAILED counts an attempt.
        if let tracker = trackers[failed.lease], tracker.unit == failed.unit, !speaks(for: failed.lease, tracker, from: routingID, session: session) {
            guard session != nil else {
                // A worker on a new connection speaks for its lease with HEARTBEAT first, then resends.
                queue(.disconnect(reason: "the coordinator does not know this connection; send HEARTBEAT with your lease"), to: routingID)
                return
            }
            let reason = "FAILED for lease \(failed.lease) of unit \(failed.unit) from a connection that does not hold it"
            reject(routingID, reason)
            queue(.ack(Acknowledgement(unit: failed.unit, lease: failed.lease, outcome: .rejected, reason: reason)), to: routingID)
            return
        }
        defer { if failed.ready { readyAfterReport(from: routingID, session: session, lease: failed.lease) } }
        let transition = apply(.failed(failed))
        let outcome = transition.acknowledgement ?? .rejected
        queue(
            .ack(Acknowledgement(unit: failed.unit, lease: failed.lease, outcome: outcome, reason: transition.reason)), to: routingID,
            lingers: ackMayLinger(ready: failed.ready, outcome: outcome, session: session))
        switch transition.verdict {
        case .applied:
            trackers[failed.lease] = nil
            if session?.lease == failed.lease { session?.lease = nil }
            logEnded(failed.lease, unit: failed.unit, transition, event: failed.disposition == .released ? "lease_released" : "unit_failed", reason: failed.reason)
        case .ignored(let reason):
            logger.info("report_ignored", metadata: ["unit": "\(failed.unit)", "lease": "\(failed.lease)", "reason": "\(reason)"])
        case .rejected(let reason):
            reject(routingID, reason)
        }
    }

    /// Whether a connection speaks for a live lease: it holds it, or the lease was restored
    /// after a restart, nobody has claimed it yet, and the connection's session has the name
    /// the lease went to.
    private func speaks(for lease: LeaseID, _ tracker: LeaseTracker, from routingID: RoutingID, session: WorkerSession?) -> Bool {
        if let holder = tracker.holder { return holder == routingID }
        return session != nil && session?.name == state.leases[lease]?.worker
    }

    private func logEnded(_ lease: LeaseID, unit: UnitID, _ transition: Transition, event: Logger.Message, reason: String) {
        logger.warning(event, metadata: ["unit": "\(unit)", "lease": "\(lease)", "reason": "\(reason)"])
        if transition.poisoned != nil {
            let attempts = state.poisoned[unit]?.reasons.count ?? 0
            logger.error("unit_poisoned", metadata: ["unit": "\(unit)", "attempts": "\(attempts)", "reason": "\(reason)"])
        }
    }

    // MARK: Leases

    private func expire(_ lease: LeaseID, unit: UnitID, reason: String) {
        let transition = apply(.expired(unit: unit, lease: lease))
        guard transition.changed else { return }
        expiredLeases += 1
        if let holder = trackers.removeValue(forKey: lease)?.holder {
            // In case the worker is alive but too slow: it must stop and delete its files.
            queue(.cancel(Cancel(unit: unit, lease: lease, reason: "lease \(lease) expired: \(reason)")), to: holder)
            if sessions[holder]?.lease == lease { sessions[holder]?.lease = nil }
        }
        logEnded(lease, unit: unit, transition, event: "lease_expired", reason: reason)
    }

    private func release(_ lease: LeaseID, unit: UnitID, reason: String) {
        let transition = apply(.failed(UnitFailed(unit: unit, lease: lease, disposition: .released, reason: reason)))
        guard transition.changed else { return }
        if let holder = trackers.removeValue(forKey: lease)?.holder {
            queue(.cancel(Cancel(unit: unit, lease: lease, reason: reason)), to: holder)
            if sessions[holder]?.lease == lease { sessions[holder]?.lease = nil }
        }
        logger.notice("lease_released", metadata: ["unit": "\(unit)", "lease": "\(lease)", "reason": "\(reason)"])
    }

    /// Timers, at most every 100 ms: lease deadlines, heartbeats, lost workers, progress.
    private func timerPass() throws {
        let now = clock.now
        // A stall of our own (a slow fsync, a swapped-out process) must not expire healthy
        // leases: a loop pass normally takes well under one poll timeout.
        let stall = now - lastLoopPass
        lastLoopPass = now
        if stall > max(configuration.heartbeatInterval, .milliseconds(250)) {
            for lease in trackers.keys { trackers[lease]!.deadline += stall }
            logger.warning("coordinator_stalled", metadata: ["seconds": "\(String(format: "%.2f", stall.seconds))"])
        }
        guard now - lastTimerPass >= .milliseconds(100) else { return }
        lastTimerPass = now
        for (lease, tracker) in trackers where tracker.deadline <= now {
            if tracker.claimed {
                expire(lease, unit: tracker.unit, reason: "worker \(state.leases[lease]?.worker ?? "?") stopped sending heartbeats")
            } else {
                release(lease, unit: tracker.unit, reason: "no worker claimed the lease after the coordinator restarted")
            }
        }
        let heartbeat = coordinatorHeartbeat
        for session in Array(sessions.values) {
            if now - session.lastSeen > livenessPeriod {
                dropSession(session, reason: "no message for \(configuration.liveness) heartbeat intervals")
            } else if now - session.lastSent >= configuration.heartbeatInterval {
                // Follows from no event: it waits only behind the peer's other messages.
                queue(.frames(heartbeat), to: session.routingID, after: 0)
            }
        }
        let progress = progressTokens
        throughput.record(total: progress, at: now)
        publishMetrics(rate: throughput.rate(total: progress, at: now))
        if now - lastProgressLog >= .seconds(10) {
            lastProgressLog = now
            var metadata = metadataCounts()
            metadata["tok_s"] = "\(Int(throughput.rate(total: progress, at: now)))"
            metadata["workers"] = "\(sessions.count)"
            logger.info("progress", metadata: metadata)
        }
    }

    private func dropSession(_ session: WorkerSession, reason: String) {
        guard sessions[session.routingID] === session else { return }
        sessions[session.routingID] = nil
        session.idle = false
        session.dropped = true
        // Its lease, if any, lives on until its own deadline: the worker may reconnect.
        logger.warning("worker_lost", metadata: ["worker": "\(session.name)", "reason": "\(reason)", "lease": "\(session.lease.map { "\($0)" } ?? "none")"])
    }

    private func shutDown(_ session: WorkerSession, reason: String) {
        session.idle = false
        session.shutdownSent = true
        queue(.shutdown(reason: reason), to: session.routingID)
    }

    // MARK: Planning and assignment

    /// Units kept planned: one for each worker waiting, and a few more. Not one per worker: the
    /// planned units' records and encoded ASSIGNs are touched again when leased, and with
    /// thousands planned ahead they have left the cache by then.
    private var pendingTarget: Int { configuration.lookahead + idleQueue.count }
    /// What every ASSIGN holds alike, encoded once and shared by the templates. Its settings
    /// are the journal's, but the trainer where it listens now.
    private lazy var assignmentPreamble: AssignmentPreamble = {
        var settings = state.run.settings
        settings.trainerEndpoint = configuration.run.settings.trainerEndpoint
        return AssignmentPreamble(
            run: state.run.run, heartbeatInterval: configuration.heartbeatInterval, liveness: configuration.liveness,
            encodedSettings: Assignment.encodedSettings(settings))
    }()

    private func assignmentTemplate(_ plan: UnitPlan, lines: [CorpusLine]) -> AssignmentTemplate {
        AssignmentTemplate(preamble: assignmentPreamble, file: state.run.corpus.paths[plan.fileIndex], plan: plan, corpusLines: lines)
    }

    private func planAhead() throws {
        while !state.planningComplete && state.pending.count < pendingTarget {
            guard let (plan, lines) = try planner.next() else {
                apply(.planningFinished)
                logger.info("planning_complete", metadata: ["units": "\(state.plannedCount)"])
                return
            }
            let transition = apply(.planned(plan))
            guard transition.changed else {
                throw CoordinatorError("the planner cut unit \(plan.unit), which the journal does not accept: \(transition.reason ?? ""); the corpus may have changed")
            }
            plannedAssignments.append(assignmentTemplate(plan, lines: lines))
        }
    }

    /// The frames worker messages repeat: received as these arrays, not copies.
    public static let sharedFrames = [ClusterWire.Channel.worker.header] + [ClusterWire.Command.ready, .heartbeat, .done, .failed].map(\.frame)

    /// Messages handled between two assignment rounds within a batch.
    static let assignEvery = 64

    private func assign() throws {
        guard !state.pending.isEmpty, !idleQueue.isEmpty else { return }
        // Taken from the front by index and cut once: removeFirst per unit would move the rest.
        var taken = 0
        defer { idleQueue.removeFirst(taken) }
        while !state.pending.isEmpty, taken < idleQueue.count {
            let session = idleQueue[taken]
            taken += 1
            guard !session.dropped, session.idle, session.lease == nil, !session.shutdownSent else { continue }
            let routingID = session.routingID
            session.idle = false
            let unit = state.pending.first!
            if state.nextLease > reservedHere { try reserveLeases() }
            let lease = state.nextLease
            let transition = apply(.leased(unit: unit, lease: lease, worker: session.name))
            guard transition.changed, let record = state.active[unit] else {
                throw CoordinatorError("internal error: leasing unit \(unit) was refused: \(transition.reason ?? "")")
            }
            let template: AssignmentTemplate
            if let cached = plannedAssignments.popFirst(if: { $0.unit == unit }) {
                template = cached
            } else {
                do {
                    template = assignmentTemplate(record.plan, lines: try unitReader.lines(of: record.plan))
                } catch {
                    throw CoordinatorError("\(error)")
                }
            }
            let now = clock.now
            session.lease = lease
            trackers[lease] = LeaseTracker(unit: unit, holder: routingID, deadline: now + livenessPeriod, claimed: true, started: now)
            template.write(lease: lease, attempt: record.leaseCount, into: &assignFrames)
            // A lease is soft state: after a crash before its LEASED is durable the unit is simply
            // pending again (planned again, the same, if its PLANNED was lost too), and reports
            // for the lease are ignored, as its id is skipped. So the ASSIGN waits only for its
            // id's reservation, not for the commit in flight: a slow sync (50-200 ms on a shared
            // virtual disk) holds back ACKs, not work.
            let durable = lease <= durableReservation
            if durable && session.assignBeforeAck {
                // Ahead of the ACK of the report that asked for it, which waits for the sync.
                send(.frames(assignFrames), to: routingID, assigned: lease, session: session)
            } else {
                queue(.frames(assignFrames), to: routingID, assigned: lease, after: durable ? 0 : journal.appendedEvents)
            }
            logger.info("unit_leased", metadata: ["unit": "\(unit)", "lease": "\(lease)", "worker": "\(session.name)", "attempt": "\(record.leaseCount)"])
        }
        idleQueue.removeFirst(taken)
        taken = 0
        if idleQueue.count > 4 * max(sessions.count, 1) { idleQueue.removeAll { $0.dropped || !$0.idle } }
    }

    /// Journals a new block of lease ids. It is durable before any ASSIGN with one of its ids
    /// leaves, so ids stay unique across restarts although LEASED is not waited for.
    private func reserveLeases() throws {
        let first = max(state.nextLease.rawValue, state.reservedThrough.rawValue + 1)
        let through = LeaseID(first + JournalFormat.leaseBlock - 1)
        guard apply(.leasesReserved(through: through)).changed else {
            throw CoordinatorError("internal error: lease ids up to \(through) could not be reserved")
        }
        reservedHere = through
    }

    // MARK: Draining and completion

    private func beginDrain() {
        draining = true
        drainDeadline = clock.now + configuration.drainTimeout
        logger.notice("drain_started", metadata: ["leases": "\(trackers.count)", "timeout_s": "\(Int(configuration.drainTimeout.seconds))"])
        for session in sessions.values where !session.shutdownSent {
            shutDown(session, reason: "the coordinator is stopping; finish your unit")
        }
        idleQueue.removeAll()
    }

    private func releaseAll(reason: String) {
        for (lease, tracker) in trackers { release(lease, unit: tracker.unit, reason: reason) }
    }

    private func writeManifest() throws {
        try state.manifestWithoutShards().write(toDirectory: configuration.outputDirectory, streaming: state.manifestShards)
    }

    private func complete() throws {
        // The last reports' ACKs first: the workers need not wait for the manifest.
        try commit()
        try writeManifest()
        for name in state.strayFiles() where unlink(configuration.outputDirectory + "/" + name) == 0 {
            logger.info("stray_deleted", metadata: ["file": "\(name)"])
        }
        // Half-written shards of workers that were killed (a shard is written under a hidden
        // temporary name and renamed when complete). Every lease has ended by now.
        let temporary = (try? FileManager.default.contentsOfDirectory(atPath: configuration.outputDirectory))?.filter {
            $0.hasPrefix(".unit-") && $0.contains(".shard.tmp-")
        } ?? []
        for name in temporary where unlink(configuration.outputDirectory + "/" + name) == 0 {
            logger.info("stray_deleted", metadata: ["file": "\(name)"])
        }
        apply(.completed)
        try commit()
        var metadata = metadataCounts()
        metadata["manifest"] = "\(configuration.outputDirectory)/\(ShardManifest.fileName)"
        metadata["seconds"] = "\(String(format: "%.1f", (clock.now - startedAt).seconds))"
        logger.notice("run_complete", metadata: metadata)
        for (unit, record) in state.poisoned.sorted(by: { $0.key < $1.key }) {
            logger.error("unit_failed_for_good", metadata: ["unit": "\(unit)", "reason": "\(record.reasons.last ?? "")"])
        }
        try serveShutdown()
    }

    /// Tells every worker to shut down, and for a short while answers anyone who calls.
    private func serveShutdown() throws {
        for session in sessions.values where !session.shutdownSent { shutDown(session, reason: "the run is complete") }
        try commit()
        let end = clock.now + configuration.heartbeatInterval * 2
        var poller = makePoller()
        while clock.now < end && stopRequests() == 0 {
            _ = try poller.poll(timeout: .milliseconds(50))
            passStarted = clock.now
            try answerAuthentication()
            try answerStatusRequests()
            while let (routingID, frames) = try workerSocket.receiveRoutedIfReady(shared: Self.sharedFrames) {
                handle(frames, from: routingID)
                if let session = sessions[routingID], !session.shutdownSent {
                    shutDown(session, reason: "the run is complete")
                } else if sessions[routingID] == nil {
                    queue(.shutdown(reason: "the run is complete"), to: routingID)
                }
            }
            try commit()
        }
    }

    // MARK: Status

    private var progressTokens: Int { state.tokens + trackers.values.reduce(0) { $0 + $1.tokens } }

    private func metadataCounts() -> Logger.Metadata {
        [
            "units_planned": "\(state.plannedCount)", "units_done": "\(state.done.count)", "units_failed": "\(state.poisoned.count)",
            "units_leased": "\(state.leasedCount)", "tokens": "\(state.tokens)", "rows": "\(state.rows)",
        ]
    }

    private func publishMetrics(rate: Double) {
        guard let metrics = configuration.metrics else { return }
        typealias Sample = MetricsRegistry.Sample
        // One call: a scrape in the middle of a pass would otherwise see some figures of this
        // pass beside others of the last (or, on the first pass, none).
        metrics.set([
            Sample("units_planned", Double(state.plannedCount), help: "Units cut from the corpus so far (the total once planning_complete is 1)."),
            Sample("planning_complete", state.planningComplete ? 1 : 0, help: "1 once the whole corpus is planned."),
            Sample("units_done", Double(state.done.count), help: "Units whose shards are accepted."),
            Sample("units_failed", Double(state.poisoned.count), help: "Units that ran out of attempts."),
            Sample("units_leased", Double(state.leasedCount), help: "Units a worker holds now."),
            Sample("units_pending", Double(state.pending.count), help: "Planned units waiting for a worker."),
            Sample("tokens_collected_total", Double(state.tokens), kind: .counter, help: "Tokens of accepted units."),
            Sample("rows_collected_total", Double(state.rows), kind: .counter, help: "Rows per hook of accepted units."),
            Sample("workers_alive", Double(sessions.count), help: "Workers heard from within the liveness period."),
            Sample("tokens_per_second", rate, help: "Collection rate over the last minute."),
            Sample("leases_expired_total", Double(expiredLeases), kind: .counter, help: "Leases that missed their heartbeats (since this coordinator started)."),
            Sample("messages_rejected_total", Double(rejectedMessages), kind: .counter, help: "Malformed or contradicting messages dropped (since start)."),
            Sample("draining", draining ? 1 : 0, help: "1 while a signal drains the coordinator."),
        ])
    }

    private func answerAuthentication() throws {
        guard let authenticator else { return }
        for decision in try authenticator.answerPending() where !decision.admitted {
            logger.warning(
                "peer_refused",
                metadata: ["address": "\(decision.address)", "mechanism": "\(decision.mechanism)", "client_key": "\(decision.clientKey)", "reason": "client key not allowed"])
        }
    }

    private func answerStatusRequests() throws {
        guard let statusSocket else { return }
        while var parts = try statusSocket.receiveFramesIfReady() {
            guard parts.count >= 2 else { continue }
            // A REQ client puts an empty delimiter frame after its routing id.
            let envelope = parts[1].isEmpty ? Array(parts[0...1]) : [parts[0]]
            parts.removeFirst(envelope.count)
            let request: StatusRequest
            do {
                guard case .request(let decoded) = try StatusMessage.decode(frames: parts) else {
                    reject(RoutingID(envelope[0]), "a status reply sent to the coordinator")
                    continue
                }
                request = decoded
            } catch {
                reject(RoutingID(envelope[0]), "\(error)")
                continue
            }
            let reply = StatusMessage.reply(report(includeWorkers: request.includeWorkers)).encode()
            try? statusSocket.send(multipart: envelope + reply, dontWait: true)
        }
    }

    private func report(includeWorkers: Bool) -> StatusReport {
        let now = clock.now
        let progress = progressTokens
        let rate = throughput.rate(total: progress, at: now)
        var report = StatusReport(
            run: state.run.run, phase: state.completed ? .complete : draining ? .draining : .running, uptimeSeconds: (now - startedAt).seconds,
            planningComplete: state.planningComplete, unitsPlanned: state.plannedCount, unitsDone: state.done.count, unitsLeased: state.leasedCount,
            unitsPending: state.pending.count, unitsFailed: state.poisoned.count, rows: state.rows, tokens: state.tokens, tokensPerSecond: rate)
        // Tokens left, from the bytes left at the tokens-per-byte seen so far.
        let plannedBytes = state.planningComplete ? nil : Optional(corpusFileBytes.reduce(0, +))
        if rate > 0, bytesDone > 0 {
            let tokensPerByte = Double(tokensDoneHere) / Double(bytesDone)
            let activeBytes = state.active.values.reduce(Int64(0)) { $0 + $1.plan.byteRange.upperBound - $1.plan.byteRange.lowerBound }
            let unplannedBytes = plannedBytes.map { max(0, $0 - bytesPlanned) } ?? 0
            let remaining = Double(activeBytes + unplannedBytes) * tokensPerByte - Double(trackers.values.reduce(0) { $0 + $1.tokens })
            report.etaSeconds = max(0, remaining / rate)
        } else if state.allUnitsFinished {
            report.etaSeconds = 0
        }
        if includeWorkers {
            report.workers = sessions.values.sorted { $0.name < $1.name }.prefix(ClusterWire.Limits.maxStatusWorkers).map { session in
                let tracker = session.lease.flatMap { trackers[$0] }
                let elapsed = tracker.map { (now - $0.started).seconds } ?? 0
                let rate = tracker.map { elapsed > 1 ? Double($0.tokens) / elapsed : session.lastRate } ?? session.lastRate
                return WorkerStatus(
                    name: session.name, unit: tracker?.unit, lease: tracker == nil ? nil : session.lease, tokensPerSecond: rate,
                    lastSeenSeconds: (now - session.lastSeen).seconds, unitsDone: session.unitsDone)
            }
        }
        report.failures = state.poisoned.keys.sorted().prefix(ClusterWire.Limits.maxStatusFailures).map {
            FailureReport(unit: $0, reason: state.poisoned[$0]!.reasons.last ?? "")
        }
        return report
    }

    /// Corpus bytes covered by planned units (files before the planner's, plus its offset).
    private var bytesPlanned: Int64 {
        let position = state.planPosition
        return position.byteOffset + corpusFileBytes.prefix(position.fileIndex).reduce(0, +)
    }

    private func summary(manifest: Bool) -> CoordinatorSummary {
        CoordinatorSummary(
            unitsPlanned: state.plannedCount, unitsDone: state.done.count, unitsFailed: state.poisoned.count, rows: state.rows, tokens: state.tokens,
            documents: state.documents, seconds: (clock.now - startedAt).seconds,
            manifestPath: manifest ? configuration.outputDirectory + "/" + ShardManifest.fileName : nil,
            failures: state.poisoned.keys.sorted().map { ($0, state.poisoned[$0]!.reasons.last ?? "") })
    }
}
