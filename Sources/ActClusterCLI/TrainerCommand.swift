import ArgumentParser
import Foundation
import Trainer
import TrainerService
import ZeroMQ

/// `actcluster trainer`: the live front end, fed by workers over the batch channel.
struct TrainerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trainer",
        abstract: "Fit a sparse autoencoder on activation batches streamed by workers (live).",
        discussion: """
            Binds a PULL socket at --bind (workers push BATCH messages to it; give the \
            coordinator `--trainer ENDPOINT`) and prints the bound endpoint (`tcp://…:0` picks \
            a free port). Batches of --hook are decoded (bf16, fp16 or fp32 to float32), the \
            first copy of each (run, unit, hook, sequence) is kept, and malformed ones are \
            dropped with a logged reason. Rows go through a bounded queue (--queue-tokens; the \
            receiver stops receiving when it is full, so workers wait) into the shuffle buffer \
            and the same engine as `train`.

            Input normalisation: the statistics carried by each batch are merged, and the scale \
            (E‖x‖ = √d) is fixed from every batch received when the shuffle buffer first fills, \
            before the first step.

            The run ends at --tokens, after --idle-timeout seconds without a new batch (the \
            buffer is drained first; the learning-rate schedule still assumes --tokens), or on \
            SIGINT/SIGTERM (finish the step, checkpoint, exit). Checkpoints and metrics go to \
            --out as with `train`; --resume continues (deduplication starts afresh). With \
            --metrics-bind, Prometheus metrics (training, plus batches received, dropped and \
            queued) are served at HOST:PORT/metrics.
            """
    )

    @Option(help: ArgumentHelp("Endpoint to bind the PULL socket at, e.g. tcp://*:5557 or tcp://127.0.0.1:0.", valueName: "endpoint"))
    var bind: String

    @Option(help: ArgumentHelp("The trainer's CURVE secret key file (from `actcluster keygen`); workers need its public key.", valueName: "file"))
    var curveSecretKey: String?

    @Option(
        help: ArgumentHelp(
            "With --curve-secret-key: a file of the workers' public keys (one per line, # comments); only they may push batches.",
            valueName: "file"))
    var curveAllow: String?

    @Option(help: ArgumentHelp("Seconds without a new batch after which training drains the buffer and stops (0: never).", valueName: "seconds"))
    var idleTimeout: Double = 0

    @Option(help: ArgumentHelp("Rows queued between the receiver and the training loop (default 4 batches).", valueName: "N"))
    var queueTokens: Int?

    @Option(help: ArgumentHelp("Model name recorded in checkpoints and exports (batches do not carry it).", valueName: "name"))
    var modelName = ""

    @OptionGroup var dictionary: DictionaryOptions
    @OptionGroup var metrics: MetricsOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard dictionary.hook != nil else { throw ValidationError("give --hook: the trainer keeps the batches of one hook, e.g. --hook blocks.3.hook_resid_post") }
        try checkEndpoint(bind, option: "--bind", example: "tcp://*:5557")
        guard idleTimeout >= 0, idleTimeout.isFinite else { throw ValidationError("--idle-timeout cannot be negative") }
        if let queueTokens, queueTokens <= 0 { throw ValidationError("--queue-tokens must be positive") }
        if curveAllow != nil, curveSecretKey == nil { throw ValidationError("--curve-allow needs --curve-secret-key") }
    }

    func run() throws {
        let log = try logging.bootstrap(role: "trainer")
        // Before any socket is bound, so a bad --metrics-bind fails at once.
        let endpoint = try metrics.serve(log: log)
        defer { endpoint?.stop() }
        let published = endpoint.map { TrainerMetrics(registry: $0.registry) }
        var secret: String?
        if let curveSecretKey {
            do {
                secret = try CurveKeyPair.parseKeyText(try readKeyFile(curveSecretKey), role: "secret")
            } catch let error as CurveKeyError {
                throw CommandFailure("\(curveSecretKey): \(error)")
            }
        }
        let configuration = LiveSourceConfiguration(
            bind: bind, hook: dictionary.hook!, curveSecretKey: secret, curveAllowedClientKeys: try curveAllow.map(readAllowList),
            queueRows: queueTokens ?? 4 * dictionary.batchTokens, idleTimeout: idleTimeout > 0 ? .milliseconds(Int64(idleTimeout * 1000)) : nil,
            modelName: modelName)
        installStopHandlers()
        let source: LiveBatchSource
        do {
            source = try LiveBatchSource(configuration: configuration, logger: log, shouldStop: { TrainingRun.stopRequested })
        } catch {
            throw CommandFailure("\(error)")
        }
        published?.follow(source)
        // Unbuffered, so a script reading our stdout learns the port at once.
        FileHandle.standardOutput.write(Data("trainer listening on \(source.endpoint)\n".utf8))
        source.start()
        defer { source.stop() }
        guard source.waitForFirstBatch() else {
            print("stopped before any batch of \(configuration.hook) arrived; nothing trained")
            return
        }
        do {
            let run = try dictionary.makeRun(source: source, logger: log)
            published?.follow(run)
            let checkpoint = try run.run()
            source.stop()
            let counters = source.snapshot
            print(
                "trained \(run.trainer.step) steps, \(run.trainer.tokens) tokens; checkpoint \(checkpoint); batches: \(counters.accepted) accepted, \(counters.duplicates) duplicate, \(counters.rejected) rejected, \(counters.otherHooks) of other hooks"
            )
        } catch let error as CommandFailure {
            throw error
        } catch let error as ValidationError {
            throw error
        } catch {
            throw CommandFailure("\(error)")
        }
    }
}
