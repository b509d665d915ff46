import ClusterProtocol
import Collection
import Foundation
import Logging
import Platform
import Shards
import Tokenizers
import Transformers
import ZeroMQ

/// One leased unit being collected: the compute thread writes progress and the outcome, the
/// main thread (which owns the DEALER) reads them and may ask the computation to stop.
final class UnitJob: @unchecked Sendable {
    enum Outcome: Sendable {
        /// Every shard is durable.
        case collected(UnitResult)
        /// The unit failed here (counts as an attempt); the sentence goes into FAILED.
        case failed(String)
        /// Stopped on request, before it finished.
        case cancelled
        /// This worker cannot run the run's model: give the unit back and exit.
        case unusableModel(WorkerError)
    }

    let assignment: Assignment
    let received: ContinuousClock.Instant
    private let lock = NSLock()
    private var tokens = 0
    private var stopRequested = false
    private var result: Outcome?

    init(assignment: Assignment, received: ContinuousClock.Instant) {
        self.assignment = assignment
        self.received = received
    }

    var tokensSoFar: Int { lock.withLock { tokens } }
    var isCancelled: Bool { lock.withLock { stopRequested } }
    /// The outcome, once the compute thread is done with the unit (and its files).
    var outcome: Outcome? { lock.withLock { result } }

    func cancel() { lock.withLock { stopRequested = true } }
    func report(tokens value: Int) { lock.withLock { tokens = value } }
    func finish(_ outcome: Outcome) { lock.withLock { result = outcome } }
}

/// The compute side of a worker: the loaded model (kept across units while the run's model
/// path and digest stay the same), the collector and the PUSH to a trainer. Only one unit
/// runs at a time, each on a thread of its own; the main thread starts the next unit only
/// after the previous one has finished, so this state is never touched concurrently.
final class ComputeEngine: @unchecked Sendable {
    private let configuration: WorkerConfiguration
    private let context: ZeroMQContext
    private let logger: Logger
    private var loaded: (path: String, digest: [UInt8], model: TransformerModel, tokenizer: Tokenizer)?
    private var streamer: BatchStreamer?

    init(configuration: WorkerConfiguration, context: ZeroMQContext, logger: Logger) {
        self.configuration = configuration
        self.context = context
        self.logger = logger
    }

    /// SHA-256 of the model loaded for the last unit, for READY.
    var loadedModelSHA256: [UInt8]? { loaded?.digest }

    /// Starts `job` on a new thread.
    func start(_ job: UnitJob) {
        let thread = Thread { [self] in
            nameCurrentThread("compute")
            job.finish(run(job))
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Closes the PUSH socket (call once no unit runs).
    func close() {
        streamer?.close()
        streamer = nil
    }

    private func run(_ job: UnitJob) -> UnitJob.Outcome {
        let assignment = job.assignment
        let settings = assignment.settings
        let model: TransformerModel, tokenizer: Tokenizer
        switch load(settings.model) {
        case .success(let pair): (model, tokenizer) = pair
        case .failure(let error): return .unusableModel(error)
        }
        if job.isCancelled { return .cancelled }
        do {
            try FileManager.default.createDirectory(atPath: settings.outputDirectory, withIntermediateDirectories: true)
            var collection = CollectionSettings(hooks: settings.hooks)
            collection.context = settings.context
            collection.dtype = settings.dtype
            collection.skipSpecial = settings.skipSpecial
            collection.batchWindows = settings.batchWindows
            collection.blockRows = settings.blockRows
            let collector = try ActivationCollector(
                model: model, tokenizer: tokenizer, settings: collection, modelName: settings.model.name, logger: logger)
            let stream = try settings.trainerEndpoint.map { try self.streamer(to: $0) }
            stream?.begin(run: assignment.run, worker: configuration.name, unit: assignment.unit, lease: assignment.lease, dtype: settings.dtype)
            let unit = assignment.unit.rawValue, lease = assignment.lease.rawValue
            let result = try collector.collect(
                unit: unit, lines: assignment.corpusLines, into: settings.outputDirectory,
                fileName: { ClusterWire.shardFileName(unit: unit, lease: lease, hook: $0) },
                observer: { batch in
                    job.report(tokens: batch.tokensSoFar)
                    try stream?.add(batch) { job.isCancelled }
                    return !job.isCancelled
                })
            job.report(tokens: result.tokens)
            if let stream {
                let hooks = result.shards.map { (name: $0.header.hook, width: $0.header.width) }
                try stream.finish(hooks: hooks) { job.isCancelled }
            }
            if job.isCancelled { return .cancelled }
            for hook in result.statistics.keys.sorted() where !HookStatistics(result.statistics[hook]!).isFinite {
                return .failed("the activations of hook \(hook) in unit \(unit) are not finite (NaN or infinity); the model or its weights are broken")
            }
            return .collected(result)
        } catch is CollectionCancelled {
            return .cancelled
        } catch {
            return .failed(String(describing: error))
        }
    }

    /// The run's model, checked against its digest, from the cache or from disk.
    private func load(_ reference: ModelReference) -> Result<(TransformerModel, Tokenizer), WorkerError> {
        let configPath = reference.path + "/config.json"
        let digest: [UInt8]
        do {
            digest = SHA256.hash(try readFile(configPath))
        } catch {
            return .failure(.modelUnusable(path: reference.path, reason: String(describing: error)))
        }
        guard digest == reference.configSHA256 else {
            return .failure(.modelMismatch(path: reference.path, expected: reference.configSHA256, found: digest))
        }
        if let loaded, loaded.path == reference.path, loaded.digest == digest { return .success((loaded.model, loaded.tokenizer)) }
        loaded = nil
        do {
            let clock = ContinuousClock()
            let start = clock.now
            let model = try TransformerModel(directory: reference.path)
            model.threads = configuration.threads
            let tokenizer = try Tokenizer(contentsOfFile: reference.path + "/tokenizer.json")
            loaded = (reference.path, digest, model, tokenizer)
            logger.info(
                "model_loaded",
                metadata: [
                    "model.path": "\(reference.path)", "model.sha256": "\(SHA256.hex(digest))",
                    "seconds": "\(String(format: "%.2f", (clock.now - start).seconds))",
                ])
            return .success((model, tokenizer))
        } catch {
            return .failure(.modelUnusable(path: reference.path, reason: String(describing: error)))
        }
    }

    private func streamer(to endpoint: String) throws -> BatchStreamer {
        if let streamer, streamer.endpoint == endpoint { return streamer }
        streamer?.close()
        let created = try BatchStreamer(context: context, endpoint: endpoint, configuration: configuration, logger: logger)
        streamer = created
        return created
    }
}
