import ClusterProtocol
import Collection
import Foundation
import Logging
import Platform
import ZeroMQ

/// The worker role: leases units from a coordinator and collects them.
///
/// The thread that calls ``run()`` owns the DEALER socket (ZeroMQ sockets are not
/// thread-safe): it answers the coordinator, sends HEARTBEAT every interval, keeps DONE and
/// FAILED until their ACK, and reconnects when the coordinator falls silent (Paranoid
/// Pirate). Each unit is collected on a compute thread of its own, which also owns the PUSH
/// socket to a trainer. See the wire protocol's "Worker channel" for the rules it follows.
public final class Worker: @unchecked Sendable {
    public let configuration: WorkerConfiguration
    private let logger: Logger
    private let context: ZeroMQContext
    private let stopLock = NSLock()
    private var stopRequests = 0

    /// - Parameter context: the ZeroMQ context to open sockets in (tests pass theirs to
    ///   use `inproc://`); a new one by default.
    public init(configuration: WorkerConfiguration, logger: Logger, context: ZeroMQContext? = nil) throws {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "worker.name"] = "\(configuration.name)"
        self.logger = logger
        if let context {
            self.context = context
        } else {
            do {
                self.context = try ZeroMQContext()
            } catch {
                throw WorkerError.socket(error.description)
            }
        }
    }

    /// Asks the worker to stop, from any thread (a signal handler's queue, a test). The first
    /// request finishes the current unit, reports it and returns from ``run()``; the second
    /// gives the unit back (FAILED `released`) and returns; a third returns at once.
    public func requestStop() {
        stopLock.withLock { stopRequests += 1 }
    }

    private var stopRequestCount: Int { stopLock.withLock { stopRequests } }

    /// Runs until SHUTDOWN or ``requestStop()``; throws ``WorkerError`` when this worker
    /// cannot go on (its model differs from the run's, or a socket fails).
    public func run() throws {
        let session = WorkerSession(worker: self, configuration: configuration, context: context, logger: logger)
        try session.run { self.stopRequestCount }
    }
}

/// The state of one ``Worker/run()``: connection, lease, report awaiting its ACK.
private final class WorkerSession {
    private enum Phase {
        /// READY sent; waiting for ASSIGN.
        case idle
        case computing(UnitJob)
        /// CANCEL arrived: the compute thread is stopping; then files go and READY follows.
        case cancelling(UnitJob)
        /// A second stop request: the compute thread is stopping; then FAILED `released`.
        case releasing(UnitJob)
        /// DONE or FAILED sent; kept until its ACK.
        case reporting(Report)
    }

    private struct Report {
        var unit: UnitID
        var lease: LeaseID
        var message: WorkerMessage
        var firstSent: ContinuousClock.Instant
        var lastSent: ContinuousClock.Instant
        /// Return from `run` once acknowledged (or given up on), with this error if any.
        var exitAfterwards: Bool
        var error: WorkerError?
        /// The report carries `ready`: its ACK is followed by ASSIGN without a READY.
        var asksForNext: Bool
    }

    private struct Exit: Error {
        let error: WorkerError?
    }

    private let configuration: WorkerConfiguration
    private let context: ZeroMQContext
    private var logger: Logger
    private let engine: ComputeEngine
    private let clock = ContinuousClock()

    private var socket: ZeroMQSocket?
    private var phase = Phase.idle
    /// Reports with `ready` whose next ASSIGN came before their ACK (READY says the worker
    /// takes it): kept and resent, as in `reporting`, until the ACK comes.
    private var unacknowledged: [Report] = []
    private var interval: Duration
    private var liveness: Int
    private var lastHeard: ContinuousClock.Instant
    private var lastSent: ContinuousClock.Instant
    private var backoff: Duration
    /// SHUTDOWN arrived, or the first stop request: no READY any more.
    private var draining = false
    /// Asked for a unit (READY, or a report with `ready`) and no ASSIGN or SHUTDOWN since.
    private var awaitingAssignment = false
    private var lingerUntil: ContinuousClock.Instant?
    private var stopRequestsHandled = 0
    private var unitsDone = 0
    /// Set when an acknowledged report ends the worker.
    private var exit: Exit?

    init(worker: Worker, configuration: WorkerConfiguration, context: ZeroMQContext, logger: Logger) {
        self.configuration = configuration
        self.context = context
        self.logger = logger
        engine = ComputeEngine(configuration: configuration, context: context, logger: logger)
        interval = configuration.heartbeatInterval
        liveness = configuration.liveness
        backoff = configuration.reconnectInitial
        lastHeard = clock.now
        lastSent = clock.now
    }

    private var livenessPeriod: Duration { interval * liveness }

    func run(stopRequests: () -> Int) throws {
        logger.info(
            "worker_started",
            metadata: [
                "coordinator.endpoint": "\(configuration.endpoint)", "worker.host": "\(configuration.host)",
                "worker.pid": "\(configuration.processID)", "worker.threads": "\(configuration.threads)",
                "curve": "\(configuration.curve != nil)", "stream.policy": "\(configuration.streamPolicy)",
            ])
        var failure: WorkerError?
        do {
            try connect()
            sendReady()
            while true {
                try handleStopRequests(stopRequests())
                if case .idle = phase, draining, unacknowledged.isEmpty, !mayStillBeAssigned() { break }
                try step()
                try reconnectIfSilent(stopRequests: stopRequests)
            }
        } catch let exit as Exit {
            failure = exit.error
        } catch let error as WorkerError {
            failure = error
        } catch {
            failure = .socket(String(describing: error))
        }
        let running: Bool
        switch phase {
        case .computing, .cancelling, .releasing: running = true
        case .idle, .reporting: running = false
        }
        if !running { engine.close() }
        socket?.close()
        var metadata: Logger.Metadata = ["worker.units_done": "\(unitsDone)"]
        if let failure { metadata["error"] = "\(failure)" }
        logger.info("worker_stopped", metadata: metadata)
        if let failure { throw failure }
    }

    // MARK: Connection

    private func connect() throws {
        do {
            let dealer = try context.socket(.dealer)
            try dealer.configure(linger: .milliseconds(500), maxMessageSize: ClusterWire.Limits.workerMaxMessageBytes)
            try dealer.setHeartbeats(interval: interval, timeout: livenessPeriod)
            if let curve = configuration.curve {
                try dealer.makeCurveClient(serverPublicKey: curve.serverPublicKey, keyPair: curve.keyPair)
            }
            try dealer.connect(configuration.endpoint)
            socket = dealer
        } catch {
            throw WorkerError.socket(error.description)
        }
        lastHeard = clock.now
    }

    /// Paranoid Pirate: after `liveness` silent intervals, a new socket after a growing pause.
    private func reconnectIfSilent(stopRequests: () -> Int) throws {
        let silence = clock.now - lastHeard
        guard silence >= livenessPeriod else { return }
        logger.warning(
            "coordinator_lost",
            metadata: ["coordinator.endpoint": "\(configuration.endpoint)", "silence_s": "\(String(format: "%.1f", silence.seconds))"])
        socket?.close()
        socket = nil
        logger.info("reconnecting", metadata: ["coordinator.endpoint": "\(configuration.endpoint)", "backoff_s": "\(backoff.seconds)"])
        let deadline = clock.now + backoff
        let requestsBefore = stopRequests()
        while clock.now < deadline && stopRequests() == requestsBefore {
            Thread.sleep(forTimeInterval: min(0.05, (deadline - clock.now).seconds))
        }
        backoff = min(backoff * 2, configuration.reconnectMaximum)
        try connect()
        switch phase {
        case .idle: sendReady()
        case .reporting(var report):
            sendHeartbeat()
            send(report.message)
            report.lastSent = clock.now
            phase = .reporting(report)
        case .computing, .cancelling, .releasing: sendHeartbeat()
        }
        for index in unacknowledged.indices {
            send(unacknowledged[index].message)
            unacknowledged[index].lastSent = clock.now
        }
    }

    // MARK: Loop

    private func step() throws {
        guard let socket else { return }
        let untilHeartbeat = interval - (clock.now - lastSent)
        let timeout = max(.milliseconds(1), min(.milliseconds(50), untilHeartbeat))
        let frames: [ZeroMQMessage]?
        do {
            frames = try socket.receiveMultipart(timeout: timeout)
        } catch {
            throw WorkerError.socket(error.description)
        }
        if let frames {
            lastHeard = clock.now
            backoff = configuration.reconnectInitial
            handle(frames.map(\.bytes))
        }
        try checkComputation()
        try checkReport()
        if clock.now - lastSent >= interval { sendHeartbeat() }
    }

    private func handle(_ frames: [[UInt8]]) {
        let message: CoordinatorMessage
        do {
            message = try CoordinatorMessage.decode(frames: frames)
        } catch {
            logger.warning("message_rejected", metadata: ["reason": "\(error)", "frames": "\(frames.count)"])
            return
        }
        switch message {
        case .heartbeat: break
        case .assign(let assignment): assign(assignment)
        case .ack(let ack): acknowledge(ack)
        case .cancel(let cancel): self.cancel(cancel)
        case .shutdown(let reason):
            logger.info("shutdown_received", metadata: ["reason": "\(reason)"])
            draining = true
            awaitingAssignment = false
        case .disconnect(let reason):
            logger.info("disconnect_received", metadata: ["reason": "\(reason)"])
            switch phase {
            case .idle where !draining: sendReady()
            case .idle, .computing, .cancelling, .releasing, .reporting: sendHeartbeat()
            }
        }
    }

    private func assign(_ assignment: Assignment) {
        awaitingAssignment = false
        if case .reporting(let report) = phase, report.asksForNext, !draining {
            // The answer to the report's `ready`, ahead of its ACK: take it, keep the report.
            unacknowledged.append(report)
            phase = .idle
        }
        guard case .idle = phase, !draining else {
            // One lease at a time: give the new one back untouched (nothing was written).
            let reason = "the worker is busy with another lease or shutting down and cannot take lease \(assignment.lease)"
            logger.warning("message_rejected", metadata: ["reason": "\(reason)", "unit.id": "\(assignment.unit)", "lease.id": "\(assignment.lease)"])
            send(.failed(UnitFailed(unit: assignment.unit, lease: assignment.lease, disposition: .released, reason: reason)))
            return
        }
        interval = assignment.heartbeatInterval
        liveness = assignment.liveness
        let job = UnitJob(assignment: assignment, received: clock.now)
        phase = .computing(job)
        logger.info(
            "unit_started",
            metadata: [
                "unit.id": "\(assignment.unit)", "lease.id": "\(assignment.lease)", "unit.attempt": "\(assignment.attempt)",
                "unit.lines": "\(assignment.lines.count)", "corpus.file": "\(assignment.file)",
                "heartbeat_ms": "\(Int(assignment.heartbeatInterval.seconds * 1000))", "liveness": "\(assignment.liveness)",
            ])
        engine.start(job)
        sendHeartbeat()
    }

    private func acknowledge(_ ack: Acknowledgement) {
        if let index = unacknowledged.firstIndex(where: { $0.lease == ack.lease && $0.unit == ack.unit }) {
            // Its next ASSIGN came already.
            unacknowledged.remove(at: index)
            var metadata: Logger.Metadata = ["unit.id": "\(ack.unit)", "lease.id": "\(ack.lease)", "outcome": "\(ack.outcome)"]
            if let reason = ack.reason { metadata["reason"] = "\(reason)" }
            logger.info("report_acknowledged", metadata: metadata)
            return
        }
        guard case .reporting(let report) = phase, report.lease == ack.lease, report.unit == ack.unit else {
            logger.debug("ack_ignored", metadata: ["unit.id": "\(ack.unit)", "lease.id": "\(ack.lease)", "outcome": "\(ack.outcome)"])
            return
        }
        var metadata: Logger.Metadata = ["unit.id": "\(ack.unit)", "lease.id": "\(ack.lease)", "outcome": "\(ack.outcome)"]
        if let reason = ack.reason { metadata["reason"] = "\(reason)" }
        logger.info("report_acknowledged", metadata: metadata)
        phase = .idle
        if report.exitAfterwards {
            draining = true
            exit = Exit(error: report.error)
            return
        }
        if report.asksForNext {
            awaitingAssignment = true
        } else if !draining {
            sendReady()
        }
    }

    /// A worker that asked for a unit and then began to stop lingers one heartbeat interval:
    /// an ASSIGN on its way is given back, rather than left to expire and count as an attempt.
    private func mayStillBeAssigned() -> Bool {
        guard awaitingAssignment else { return false }
        let end = lingerUntil ?? clock.now + interval
        lingerUntil = end
        return clock.now < end
    }

    private func cancel(_ cancel: Cancel) {
        guard case .computing(let job) = phase, job.assignment.lease == cancel.lease else {
            // A DONE already sent waits for its ACK; a CANCEL for another lease is stale.
            logger.debug("cancel_ignored", metadata: ["unit.id": "\(cancel.unit)", "lease.id": "\(cancel.lease)"])
            return
        }
        job.cancel()
        phase = .cancelling(job)
        logger.info("unit_cancelled", metadata: ["unit.id": "\(cancel.unit)", "lease.id": "\(cancel.lease)", "reason": "\(cancel.reason)"])
    }

    private func handleStopRequests(_ count: Int) throws {
        if let exit { throw exit }
        while stopRequestsHandled < count {
            stopRequestsHandled += 1
            logger.info("stop_requested", metadata: ["stop.requests": "\(stopRequestsHandled)"])
            if stopRequestsHandled == 1 {
                // Finish the current unit and report it; no READY any more.
                draining = true
                continue
            }
            guard stopRequestsHandled == 2 else { throw Exit(error: nil) }
            switch phase {
            case .computing(let job):
                job.cancel()
                phase = .releasing(job)
            case .cancelling, .releasing:
                break
            case .idle, .reporting:
                throw Exit(error: nil)
            }
        }
    }

    /// Acts on the compute thread's outcome once it has one.
    private func checkComputation() throws {
        switch phase {
        case .computing(let job):
            guard let outcome = job.outcome else { return }
            let assignment = job.assignment
            switch outcome {
            case .collected(let result):
                let done = UnitDone(
                    unit: assignment.unit, lease: assignment.lease, shards: result.shards.map(ShardReport.init),
                    statistics: Dictionary(uniqueKeysWithValues: result.statistics.map { ($0.key, HookStatistics($0.value)) }),
                    skipped: Dictionary(uniqueKeysWithValues: result.skipped.map { ($0.key.rawValue, $0.value) }),
                    documents: result.documents, windows: result.windows, rows: result.rows, tokens: result.tokens,
                    timings: UnitTimings(
                        tokenize: result.tokenizeSeconds, forward: result.forwardSeconds, encode: result.encodeSeconds,
                        wall: (clock.now - job.received).seconds))
                let wall = max(done.timings.wall, 1e-9)
                logger.info(
                    "unit_done",
                    metadata: [
                        "unit.id": "\(assignment.unit)", "lease.id": "\(assignment.lease)", "unit.documents": "\(done.documents)",
                        "unit.windows": "\(done.windows)", "unit.rows": "\(done.rows)", "unit.tokens": "\(done.tokens)",
                        "wall_s": "\(String(format: "%.2f", wall))", "tok_s": "\(Int(Double(done.tokens) / wall))",
                    ])
                unitsDone += 1
                startReport(job, .done(done))
            case .failed(let reason):
                fail(job, disposition: .failed, reason: reason)
            case .cancelled:
                fail(job, disposition: .failed, reason: "the collection of unit \(assignment.unit) stopped unexpectedly")
            case .unusableModel(let error):
                fail(job, disposition: .released, reason: error.description, exitWith: error)
            }
        case .cancelling(let job):
            guard job.outcome != nil else { return }
            deleteFiles(of: job.assignment)
            phase = .idle
            if !draining { sendReady() }
        case .releasing(let job):
            guard job.outcome != nil else { return }
            fail(job, disposition: .released, reason: "the worker was told twice to stop and gives the unit back", exitAfterwards: true)
        case .idle, .reporting:
            return
        }
    }

    private func fail(
        _ job: UnitJob, disposition: UnitFailed.Disposition, reason: String, exitAfterwards: Bool = false, exitWith error: WorkerError? = nil
    ) {
        let assignment = job.assignment
        deleteFiles(of: assignment)
        logger.error(
            "unit_failed",
            metadata: [
                "unit.id": "\(assignment.unit)", "lease.id": "\(assignment.lease)", "disposition": "\(disposition)",
                "reason": "\(reason)",
            ])
        var sentence = reason
        while sentence.utf8.count > ClusterWire.Limits.maxReasonBytes { sentence.removeLast() }
        let failed = UnitFailed(unit: assignment.unit, lease: assignment.lease, disposition: disposition, reason: sentence)
        startReport(job, .failed(failed), exitAfterwards: exitAfterwards || error != nil, error: error)
    }

    private func startReport(_ job: UnitJob, _ message: WorkerMessage, exitAfterwards: Bool = false, error: WorkerError? = nil) {
        let now = clock.now
        // Asking for the next unit with the report saves a READY round trip per unit.
        let asksForNext = !draining && !exitAfterwards && error == nil
        var message = message
        switch message {
        case .done(var done):
            done.ready = asksForNext
            message = .done(done)
        case .failed(var failed):
            failed.ready = asksForNext
            message = .failed(failed)
        case .ready, .heartbeat: break
        }
        phase = .reporting(
            Report(
                unit: job.assignment.unit, lease: job.assignment.lease, message: message, firstSent: now, lastSent: now,
                exitAfterwards: exitAfterwards, error: error, asksForNext: asksForNext))
        send(message)
    }

    /// Resends an unacknowledged report every liveness period; a report that ends the worker
    /// is given up on after two periods.
    private func checkReport() throws {
        let now = clock.now
        for index in unacknowledged.indices where now - unacknowledged[index].lastSent >= livenessPeriod {
            let report = unacknowledged[index]
            logger.info("report_resent", metadata: ["unit.id": "\(report.unit)", "lease.id": "\(report.lease)", "command": "\(report.message.command)"])
            send(report.message)
            unacknowledged[index].lastSent = now
        }
        guard case .reporting(var report) = phase else { return }
        if report.exitAfterwards, now - report.firstSent >= livenessPeriod * 2 {
            logger.warning("report_unacknowledged", metadata: ["unit.id": "\(report.unit)", "lease.id": "\(report.lease)"])
            throw Exit(error: report.error)
        }
        guard now - report.lastSent >= livenessPeriod else { return }
        logger.info("report_resent", metadata: ["unit.id": "\(report.unit)", "lease.id": "\(report.lease)", "command": "\(report.message.command)"])
        send(report.message)
        report.lastSent = now
        phase = .reporting(report)
    }

    /// Deletes every file of the lease in the output folder: finished shards and the
    /// temporary files of unfinished ones (`.NAME.tmp-…`).
    private func deleteFiles(of assignment: Assignment) {
        let directory = assignment.settings.outputDirectory
        let example = ClusterWire.shardFileName(unit: assignment.unit.rawValue, lease: assignment.lease.rawValue, hook: "")
        let prefix = String(example.dropLast(".shard".count))
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        var removed = 0
        for name in names where name.hasPrefix(prefix) || name.hasPrefix("." + prefix) {
            if (try? FileManager.default.removeItem(atPath: directory + "/" + name)) != nil { removed += 1 }
        }
        logger.debug("files_deleted", metadata: ["unit.id": "\(assignment.unit)", "lease.id": "\(assignment.lease)", "files": "\(removed)"])
    }

    // MARK: Sending

    private func sendReady() {
        awaitingAssignment = true
        send(
            .ready(
                Ready(
                    worker: configuration.name, host: configuration.host, processID: configuration.processID, threads: configuration.threads,
                    software: configuration.software, loadedModelSHA256: engine.loadedModelSHA256, assignBeforeAck: true)))
    }

    private func sendHeartbeat() {
        var heartbeat = WorkerHeartbeat(worker: configuration.name)
        switch phase {
        case .computing(let job), .releasing(let job):
            heartbeat.lease = job.assignment.lease
            heartbeat.unit = job.assignment.unit
            heartbeat.tokens = job.tokensSoFar
        case .reporting(let report):
            heartbeat.lease = report.lease
            heartbeat.unit = report.unit
        case .idle, .cancelling:
            break
        }
        send(.heartbeat(heartbeat))
    }

    private func send(_ message: WorkerMessage) {
        lastSent = clock.now
        guard let socket else { return }
        do {
            try socket.send(multipart: message.encode(), dontWait: true)
        } catch {
            // Full queue or no connection yet: heartbeats come again, reports are resent.
            logger.debug("send_failed", metadata: ["command": "\(message.command)", "reason": "\(error)"])
        }
    }
}
