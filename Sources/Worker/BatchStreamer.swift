import ClusterProtocol
import Collection
import Logging
import Shards
import ZeroMQ

/// The worker's PUSH to a trainer. Owned by the compute thread (ZeroMQ sockets have one
/// owner), kept across units while the endpoint stays the same. Successive units run on
/// successive threads, never at once; the hand-over goes through the job's lock and thread
/// start (full memory barriers), which is how libzmq allows a socket to change threads.
///
/// With the `block` policy a trainer that never reads stalls the unit (its heartbeats go on):
/// that is the backpressure the policy asks for; `drop` never waits.
///
/// Each hook's batch is held back until the next one arrives, so the last batch of a unit
/// can carry `final`; a unit without rows sends one empty final batch per hook.
final class BatchStreamer {
    let endpoint: String
    private let socket: ZeroMQSocket
    private let policy: StreamPolicy
    private let logger: Logger
    /// Batches dropped under the `drop` policy since the worker started.
    private(set) var dropped = 0

    private struct UnitStream {
        var header: ActivationBatchHeader
        var hooks: [String] = []
        var sequence: [String: Int] = [:]
        var held: [String: ShardRows] = [:]
    }
    private var current: UnitStream?

    init(context: ZeroMQContext, endpoint: String, configuration: WorkerConfiguration, logger: Logger) throws {
        self.endpoint = endpoint
        policy = configuration.streamPolicy
        self.logger = logger
        socket = try context.socket(.push)
        // Linger lets queued batches reach the trainer after the last unit.
        try socket.configure(linger: .seconds(2), sendHighWaterMark: configuration.streamHighWaterMark)
        if let curve = configuration.curve {
            try socket.makeCurveClient(serverPublicKey: curve.serverPublicKey, keyPair: curve.keyPair)
        }
        try socket.connect(endpoint)
    }

    func close() { socket.close() }

    /// Starts the batches of a unit: sequence numbers restart at 0 for each hook.
    func begin(run: UInt64, worker: String, unit: UnitID, lease: LeaseID, dtype: ShardDType) {
        current = UnitStream(
            header: ActivationBatchHeader(
                run: run, worker: worker, unit: unit, lease: lease, hook: "", sequence: 0, final: false, dtype: dtype, width: 1, rows: 0))
    }

    /// Sends the previous batch of each hook and holds this one.
    func add(_ batch: CollectedBatch, shouldStop: () -> Bool) throws {
        for (hook, rows) in batch.hooks {
            if current?.sequence[hook] == nil {
                current?.hooks.append(hook)
                current?.sequence[hook] = 0
            }
            if let previous = current?.held[hook] { try send(hook: hook, rows: previous, final: false, shouldStop: shouldStop) }
            current?.held[hook] = rows
        }
    }

    /// Sends the held batch of every hook with `final` (an empty one for `hooks` that had none).
    func finish(hooks: [(name: String, width: Int)], shouldStop: () -> Bool) throws {
        guard let stream = current else { return }
        for (hook, width) in hooks where stream.sequence[hook] == nil {
            current?.hooks.append(hook)
            current?.sequence[hook] = 0
            current?.held[hook] = ShardRows(width: width)
        }
        for hook in current?.hooks ?? [] {
            if let rows = current?.held[hook] { try send(hook: hook, rows: rows, final: true, shouldStop: shouldStop) }
        }
        current = nil
    }

    private func send(hook: String, rows: ShardRows, final: Bool, shouldStop: () -> Bool) throws {
        guard var header = current?.header, let sequence = current?.sequence[hook] else { return }
        current?.sequence[hook] = sequence + 1
        current?.held[hook] = nil
        header.hook = hook
        header.sequence = sequence
        header.final = final
        header.width = rows.width
        header.rows = rows.count
        if rows.count > 0 {
            var statistics = RunningStatistics(width: rows.width)
            statistics.add(rows.activations)
            let summary = HookStatistics(statistics)
            if summary.isFinite { header.statistics = summary }
        }
        let frames = try ActivationBatch(header: header, rows: rows).encode()
        let metadata: Logger.Metadata = [
            "unit.id": "\(header.unit)", "lease.id": "\(header.lease)", "hook": "\(hook)", "batch.sequence": "\(sequence)",
            "trainer.endpoint": "\(endpoint)",
        ]
        switch policy {
        case .drop:
            do throws(ZeroMQError) {
                try socket.send(multipart: frames, dontWait: true)
            } catch {
                guard error.wouldBlock else { throw error }
                dropped += 1
                var details = metadata
                details["batches.dropped"] = "\(dropped)"
                logger.warning("batch_dropped", metadata: details)
            }
        case .block:
            // Wait at the high-water mark in short slices, so a cancelled unit stops waiting.
            while !shouldStop() {
                guard try socket.poll(for: .writable, timeout: .milliseconds(100)) else { continue }
                do throws(ZeroMQError) {
                    try socket.send(multipart: frames, dontWait: true)
                    return
                } catch {
                    guard error.wouldBlock else { throw error }
                }
            }
        }
    }
}

extension HookStatistics {
    /// Every value is finite (a control body cannot carry NaN or infinity).
    var isFinite: Bool { meanNorm.isFinite && mean.allSatisfy(\.isFinite) && variance.allSatisfy(\.isFinite) }
}
