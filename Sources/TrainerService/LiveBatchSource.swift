import ClusterProtocol
import Foundation
import Logging
import Shards
import Trainer
import ZeroMQ

/// Settings of the live trainer's receiving side.
public struct LiveSourceConfiguration: Sendable {
    /// Endpoint of the PULL socket, e.g. `tcp://*:5557`; `tcp://127.0.0.1:0` picks a free port.
    public var bind: String
    /// The hook to train on; batches of other hooks are counted and dropped.
    public var hook: String
    /// CURVE secret key (Z85) of the trainer: workers must know its public key.
    public var curveSecretKey: String?
    /// With a secret key: the only client public keys (Z85) admitted. Nil admits any client
    /// that knows the trainer's public key.
    public var curveAllowedClientKeys: Set<String>?
    /// Rows the hand-off queue between the receiving thread and the training loop holds
    /// before the receiver stops receiving (backpressure: workers then wait at their PUSH
    /// high-water mark, or drop with `--stream-policy drop`). A batch larger than this is
    /// still taken when the queue is empty.
    public var queueRows: Int
    /// The source ends after this long without an accepted batch (counted from the last one;
    /// the wait for the first batch has no limit). Nil: only a stop ends it.
    public var idleTimeout: Duration?
    /// Model identity recorded in checkpoints (BATCH does not carry it).
    public var modelName: String
    public var modelConfigSHA256: String
    /// `ZMQ_RCVHWM` of the PULL socket, in messages: small, so backpressure reaches workers.
    public var receiveHighWaterMark: Int32

    public init(
        bind: String, hook: String, curveSecretKey: String? = nil, curveAllowedClientKeys: Set<String>? = nil, queueRows: Int, idleTimeout: Duration? = nil, modelName: String = "",
        modelConfigSHA256: String = "", receiveHighWaterMark: Int32 = 4
    ) {
        self.bind = bind
        self.hook = hook
        self.curveSecretKey = curveSecretKey
        self.curveAllowedClientKeys = curveAllowedClientKeys
        self.queueRows = queueRows
        self.idleTimeout = idleTimeout
        self.modelName = modelName
        self.modelConfigSHA256 = modelConfigSHA256
        self.receiveHighWaterMark = receiveHighWaterMark
    }
}

/// What the receiver has seen so far.
public struct LiveSourceCounters: Sendable, Equatable {
    /// Messages taken off the socket.
    public var messages = 0
    /// BATCH messages of the hook accepted (first copies), and their rows.
    public var accepted = 0
    public var rows = 0
    /// Repeated (run, unit, hook, sequence): dropped without decompressing.
    public var duplicates = 0
    /// Malformed messages, corrupt payloads, another width, non-finite values.
    public var rejected = 0
    /// Well-formed batches of another hook.
    public var otherHooks = 0
}

/// The (run, unit, hook, sequence) that names the same rows on every delivery.
struct BatchKey: Hashable {
    let run: UInt64
    let unit: UInt64
    let hook: String
    let sequence: Int
}

/// Rows from workers over the batch channel, as a ``RowSource`` for ``TrainingRun``.
///
/// A receiving thread owns the PULL socket: it decodes each BATCH (protocol, header, LZ4
/// payload), drops malformed ones with a logged reason, keeps the first copy of each
/// (run, unit, hook, sequence), keeps only the configured hook, and hands float32 rows to a
/// bounded queue that ``read(maxRows:)`` drains. When the queue is full the thread stops
/// receiving, so backpressure reaches the workers through ZeroMQ's high-water marks.
///
/// The statistics carried in BATCH (count, mean, variance, mean norm, from float32) of every
/// accepted batch are merged (``RunningStatistics/merge(_:)``); ``description`` reports their
/// mean norm, which ``TrainingRun`` reads after filling its shuffle buffer, so the input
/// normalisation comes from every batch received before the first step. A batch without
/// statistics contributes statistics computed from its decoded rows.
///
/// Deduplication is per process: after a restart (`--resume`) a batch sent again is trained
/// on again.
public final class LiveBatchSource: RowSource, @unchecked Sendable {
    public let configuration: LiveSourceConfiguration
    /// The endpoint actually bound (the port filled in for `:0`).
    public let endpoint: String
    private let socket: ZeroMQSocket
    private let authenticator: CurveAuthenticator?
    private let logger: Logger
    private let shouldStop: @Sendable () -> Bool

    // Shared between the receiving thread and the training loop, under `condition`.
    private let condition = NSCondition()
    private var queue: [[Float]] = []
    private var queueHead = 0
    private var queueOffset = 0  // values already taken from queue[queueHead]
    private var queuedRows = 0
    private var width: Int?
    private var statistics: RunningStatistics?
    private var ended = false
    private var stopping = false
    private var threadFinished = false
    private var started = false
    private var counters = LiveSourceCounters()

    // Receiving thread only.
    private var seen = Set<BatchKey>()

    public var position = DataPosition()

    /// Opens and binds the PULL socket (errors are thrown here, before anything starts).
    /// - Parameter shouldStop: polled by both sides; true ends the source (e.g. a signal).
    public init(configuration: LiveSourceConfiguration, logger: Logger, shouldStop: @escaping @Sendable () -> Bool = { false }) throws {
        precondition(configuration.queueRows > 0, "the queue must hold rows")
        self.configuration = configuration
        self.logger = logger
        self.shouldStop = shouldStop
        let context = try ZeroMQContext()
        if let allowed = configuration.curveAllowedClientKeys, configuration.curveSecretKey != nil {
            authenticator = try CurveAuthenticator(context: context, allowedClientKeys: allowed)
        } else {
            authenticator = nil
        }
        socket = try context.socket(.pull)
        try socket.configure(
            linger: .zero, receiveHighWaterMark: configuration.receiveHighWaterMark, maxMessageSize: ClusterWire.Limits.trainerMaxMessageBytes)
        if let key = configuration.curveSecretKey { try socket.makeCurveServer(secretKey: key) }
        do {
            endpoint = try socket.bind(configuration.bind)
        } catch {
            throw TrainerError("cannot listen for batches on \(configuration.bind): \(error); choose another --bind endpoint")
        }
        logger.info(
            "trainer_listening",
            metadata: [
                "endpoint": "\(endpoint)", "hook": "\(configuration.hook)", "curve": "\(configuration.curveSecretKey == nil ? "off" : authenticator == nil ? "server_key" : "allow_list")",
                "queue_rows": "\(configuration.queueRows)",
            ])
    }

    deinit { stop() }

    /// Starts the receiving thread (once).
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !started else { return }
        started = true
        let thread = Thread { [self] in
            receiveLoop()
            condition.lock()
            threadFinished = true
            ended = true
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "actcluster.trainer.receive"
        thread.start()
    }

    /// Stops the receiving thread and waits for it to close the socket. Idempotent.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while started && !threadFinished { _ = condition.wait(until: Date().addingTimeInterval(0.1)) }
        condition.unlock()
        if !started { socket.close() }
    }

    public var snapshot: LiveSourceCounters {
        condition.lock()
        defer { condition.unlock() }
        return counters
    }

    /// Rows waiting in the queue for the training loop.
    public var queuedRowCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return queuedRows
    }

    /// Blocks until the first batch of the hook is accepted (true) or the source ends first.
    public func waitForFirstBatch() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while width == nil && !ended && !stopping && !shouldStop() { _ = condition.wait(until: Date().addingTimeInterval(0.1)) }
        return width != nil
    }

    /// The width and hook of the accepted batches and the mean norm of every row received so
    /// far. Call after ``waitForFirstBatch()`` returned true.
    public var description: DataDescription {
        condition.lock()
        defer { condition.unlock() }
        precondition(width != nil, "the live source has no batch yet; call waitForFirstBatch() first")
        return DataDescription(
            width: width!, hook: configuration.hook, modelName: configuration.modelName, modelConfigSHA256: configuration.modelConfigSHA256,
            meanNorm: statistics.flatMap { $0.count > 0 && $0.meanNorm > 0 ? $0.meanNorm : nil })
    }

    /// Merged statistics of the accepted batches.
    public var receivedStatistics: RunningStatistics? {
        condition.lock()
        defer { condition.unlock() }
        return statistics
    }

    /// Up to `maxRows` rows; waits for them; empty once the source has ended (stop, idle
    /// timeout or `shouldStop`) and the queue is drained.
    public func read(maxRows: Int) throws -> [Float] {
        condition.lock()
        defer { condition.unlock() }
        while queuedRows == 0 {
            if ended || stopping || shouldStop() { return [] }
            _ = condition.wait(until: Date().addingTimeInterval(0.1))
        }
        let d = width!
        var out: [Float] = []
        out.reserveCapacity(min(maxRows, queuedRows) * d)
        while out.count < maxRows * d && queueHead < queue.count {
            let chunk = queue[queueHead]
            let take = min(maxRows * d - out.count, chunk.count - queueOffset)
            out.append(contentsOf: chunk[queueOffset..<(queueOffset + take)])
            queueOffset += take
            if queueOffset == chunk.count {
                queue[queueHead] = []
                queueHead += 1
                queueOffset = 0
            }
        }
        if queueHead > 64 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        queuedRows -= out.count / d
        condition.broadcast()
        return out
    }

    // MARK: Receiving thread

    private func receiveLoop() {
        defer {
            socket.close()
            authenticator?.socket.close()
        }
        var poller = ZeroMQPoller()
        poller.add(socket)
        if let authenticator { poller.add(authenticator.socket) }
        var idleSince = ContinuousClock.now
        var anyAccepted = false
        while true {
            // Backpressure: do not take messages while the queue is full.
            condition.lock()
            var waited = false
            while queuedRows >= configuration.queueRows && !stopping && !shouldStop() {
                condition.unlock()
                // Handshakes wait for the allow-list's answer; keep giving it while full.
                answerAuthentication()
                condition.lock()
                _ = condition.wait(until: Date().addingTimeInterval(0.1))
                waited = true
            }
            let stop = stopping || shouldStop()
            condition.unlock()
            if stop { return }
            answerAuthentication()
            if waited { idleSince = .now }
            if anyAccepted, let idle = configuration.idleTimeout, ContinuousClock.now - idleSince >= idle {
                logger.info("idle_timeout", metadata: ["seconds": "\(idle / .seconds(1))"])
                return
            }
            let frames: [[UInt8]]?
            do {
                _ = try poller.poll(timeout: .milliseconds(100))
                frames = try socket.receiveFramesIfReady()
            } catch {
                logger.error("receive_failed", metadata: ["error": "\(error)"])
                return
            }
            guard let frames else { continue }
            if handle(frames) {
                anyAccepted = true
                idleSince = .now
            }
        }
    }

    private func answerAuthentication() {
        guard let authenticator else { return }
        do {
            for decision in try authenticator.answerPending() where !decision.admitted {
                logger.warning(
                    "peer_refused",
                    metadata: ["address": "\(decision.address)", "client_key": "\(decision.clientKey)", "reason": "client key not allowed"])
            }
        } catch {
            logger.error("authentication_failed", metadata: ["error": "\(error)"])
        }
    }

    private func reject(_ reason: String, _ detail: String, _ header: ActivationBatchHeader? = nil) {
        var metadata: Logger.Metadata = ["reason": "\(reason)", "detail": "\(detail)"]
        if let header {
            metadata["unit.id"] = "\(header.unit)"
            metadata["sequence"] = "\(header.sequence)"
            metadata["worker.id"] = "\(header.worker)"
        }
        logger.warning("batch_rejected", metadata: metadata)
        condition.lock()
        counters.rejected += 1
        condition.unlock()
    }

    /// Handles one message; true when its rows were accepted.
    func handle(_ frames: [[UInt8]]) -> Bool {
        condition.lock()
        counters.messages += 1
        condition.unlock()
        let batch: ActivationBatch
        do {
            batch = try ActivationBatch.decode(frames: frames)
        } catch {
            reject(error.kind.rawValue, error.description)
            return false
        }
        let header = batch.header
        guard header.hook == configuration.hook else {
            logger.debug("batch_other_hook", metadata: ["hook": "\(header.hook)", "unit.id": "\(header.unit)", "sequence": "\(header.sequence)"])
            condition.lock()
            counters.otherHooks += 1
            condition.unlock()
            return false
        }
        let key = BatchKey(run: header.run, unit: header.unit.rawValue, hook: header.hook, sequence: header.sequence)
        guard !seen.contains(key) else {
            logger.info(
                "batch_duplicate",
                metadata: ["run": "\(header.run)", "unit.id": "\(header.unit)", "sequence": "\(header.sequence)", "worker.id": "\(header.worker)", "lease.id": "\(header.lease)"])
            condition.lock()
            counters.duplicates += 1
            condition.unlock()
            return false
        }
        condition.lock()
        let knownWidth = width
        condition.unlock()
        if let knownWidth, knownWidth != header.width {
            reject("width", "the batch has width \(header.width), earlier batches of \(header.hook) have \(knownWidth)", header)
            return false
        }
        let rows: ShardRows
        do {
            rows = try batch.rows()
        } catch {
            reject(error.kind.rawValue, error.description, header)
            return false
        }
        guard rows.activations.allSatisfy({ $0.isFinite }) else {
            reject("non_finite", "the activations hold NaN or infinite values", header)
            return false
        }
        // Only a batch that decoded counts as seen: a corrupt copy does not hide a good one.
        seen.insert(key)
        var batchStatistics: RunningStatistics
        if let carried = header.statistics {
            batchStatistics = carried.running
        } else {
            batchStatistics = RunningStatistics(width: header.width)
            batchStatistics.add(rows.activations)
        }
        condition.lock()
        if width == nil { width = header.width }
        if statistics == nil { statistics = RunningStatistics(width: header.width) }
        statistics!.merge(batchStatistics)
        if rows.count > 0 {
            queue.append(rows.activations)
            queuedRows += rows.count
        }
        counters.accepted += 1
        counters.rows += rows.count
        condition.broadcast()
        condition.unlock()
        logger.info(
            "batch_received",
            metadata: [
                "run": "\(header.run)", "unit.id": "\(header.unit)", "sequence": "\(header.sequence)", "rows": "\(rows.count)", "dtype": "\(header.dtype.name)",
                "final": "\(header.final)", "worker.id": "\(header.worker)", "statistics": "\(header.statistics == nil ? "computed" : "carried")",
            ])
        return true
    }
}
