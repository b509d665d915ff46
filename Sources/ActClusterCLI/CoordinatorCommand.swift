import ArgumentParser
import ClusterProtocol
import Coordinator
import Corpus
import Foundation
import Platform
import Shards
import Transformers
import ZeroMQ

/// `actcluster coordinator`: plans a corpus into units and leases them to workers.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Lease a corpus to workers over ZeroMQ, journal progress, and write the manifest.",
        discussion: """
            The coordinator cuts the corpus into units of about --unit-tokens tokens at \
            document boundaries, as it goes (memory stays bounded however large the corpus), \
            and hands each unit, text included, to the next worker that asks \
            (`actcluster worker --connect ENDPOINT`). Workers write shards straight into --out, \
            which must be the same folder for every worker (a shared file system on a fleet).

            Every finished, failed or expired unit is journaled and fsynced in \
            --out/coordinator.journal before anything acts on it (a unit handed out just before \
            a crash is simply handed out again). After a crash, run the same command again: \
            finished units are never redone, and workers reconnect on their own. A worker that \
            stops sending heartbeats loses its lease after --liveness intervals and the unit \
            goes to another worker; a unit that fails --max-attempts times is recorded as \
            failed, with its reasons, in the manifest and the summary.

            SIGINT or SIGTERM drains: no new leases, workers finish their units, and the \
            coordinator exits once they report (or after --drain-timeout seconds, releasing \
            what is left). A second signal stops at once. Exit status: 0 when the run is \
            complete, 130/143 after a drain (run the command again to resume), 1 on an error.

            Security: with --curve-secret-key, all traffic is encrypted and only peers that \
            know the coordinator's public key get in; add --curve-allow to admit only the \
            worker keys listed there. Make keys with `actcluster keygen`.
            """
    )

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Corpus files, read in the order given.", valueName: "path"))
    var corpus: [String]

    @Option(help: "Corpus format: jsonl (one JSON object per line) or txt (one document per line).")
    var format: CorpusFormat

    @Option(help: "The JSON field that holds the text (jsonl only).")
    var textField = "text"

    @Option(help: ArgumentHelp("Hugging Face model folder, at the same path on every worker.", valueName: "dir"))
    var model: String

    @Option(help: ArgumentHelp("Hook to capture (repeatable), e.g. blocks.3.hook_resid_post.", valueName: "name"))
    var hook: [String]

    @Option(help: ArgumentHelp("Output folder for shards, the journal and manifest.json (shared with the workers).", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("Endpoint workers connect to, e.g. tcp://*:5555.", valueName: "endpoint"))
    var bind: String

    @Option(help: ArgumentHelp("Endpoint for `actcluster status`, e.g. tcp://*:5556.", valueName: "endpoint"))
    var statusBind: String?

    @Option(help: "Tokens per window, special tokens included.")
    var context = 128

    @Option(help: "Approximate tokens per unit (one shard per hook per unit).")
    var unitTokens = ClusterWire.Defaults.unitTokens

    @Option(help: "Storage type of activations: bf16, fp16 or fp32.")
    var dtype = "bf16"

    @Flag(help: "Do not capture the rows of special tokens (BOS, CLS, SEP and separators).")
    var skipSpecial = false

    @Option(help: "Windows per forward batch (and per batch streamed to a trainer).")
    var batchWindows = ClusterWire.Defaults.batchWindows

    @Option(help: ArgumentHelp("Trainer endpoint workers stream activation batches to, e.g. tcp://trainer:5557.", valueName: "endpoint"))
    var trainer: String?

    @Option(help: "Failed attempts after which a unit is recorded as failed and not retried.")
    var maxAttempts = ClusterWire.Defaults.maxAttempts

    @Option(help: "Milliseconds between heartbeats on the worker channel.")
    var heartbeatMs = Int(ClusterWire.Defaults.heartbeatInterval.components.seconds * 1000)

    @Option(help: "Heartbeat intervals of silence after which a worker is lost and its lease expires.")
    var liveness = ClusterWire.Defaults.liveness

    @Option(help: "Seconds a drain waits for in-flight units before releasing them.")
    var drainTimeout = 60

    @Option(help: ArgumentHelp(
        "Scheduler slice, in microseconds, that the loop and libzmq's I/O thread ask the kernel for (Linux 6.12 or later; 100–100000): on a busy machine a shorter slice gets them a core sooner after each wake-up, at the same share of the CPU. 0 keeps the kernel's.",
        valueName: "us"))
    var schedulerSlice = CoordinatorConfiguration.defaultSchedulerSliceMicroseconds

    @Option(help: ArgumentHelp("The coordinator's CURVE secret key file (from `actcluster keygen`).", valueName: "file"))
    var curveSecretKey: String?

    @Option(help: ArgumentHelp("The matching public key file; checked against the secret key.", valueName: "file"))
    var curvePublicKey: String?

    @Option(help: ArgumentHelp("File of admitted worker and status-client public keys, one per line (lines starting with # are comments).", valueName: "file"))
    var curveAllow: String?

    @OptionGroup var metrics: MetricsOptions

    @Flag(help: ArgumentHelp("Accept DONE without checking its shard files (for `bench dispatch`, whose workers write none).", visibility: .hidden))
    var skipFileChecks = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard !hook.isEmpty else { throw ValidationError("give at least one --hook, e.g. --hook blocks.3.hook_resid_post") }
        guard Set(hook).count == hook.count else { throw ValidationError("--hook names a hook twice") }
        guard !corpus.isEmpty else { throw ValidationError("give at least one --corpus file") }
        guard ShardDType(name: dtype) != nil else { throw ValidationError("--dtype must be bf16, fp16 or fp32, not \(dtype)") }
        guard context >= 2, context <= ClusterWire.Limits.maxContext else { throw ValidationError("--context must be 2 … \(ClusterWire.Limits.maxContext)") }
        guard unitTokens >= context, unitTokens <= ClusterWire.Limits.maxUnitTokens else {
            throw ValidationError("--unit-tokens must be at least --context (\(context)) and at most \(ClusterWire.Limits.maxUnitTokens)")
        }
        guard (1...ClusterWire.Limits.maxBatchWindows).contains(batchWindows) else {
            throw ValidationError("--batch-windows must be 1 … \(ClusterWire.Limits.maxBatchWindows)")
        }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        try checkEndpoint(bind, option: "--bind", example: "tcp://*:5555")
        if let statusBind { try checkEndpoint(statusBind, option: "--status-bind", example: "tcp://*:5556") }
        if let trainer { try checkEndpoint(trainer, option: "--trainer", example: "tcp://trainer-host:5557") }
        if let problem = CoordinatorConfiguration.schedulerSliceProblem(microseconds: schedulerSlice) { throw ValidationError(problem) }
        guard heartbeatMs >= 10, UInt64(heartbeatMs) <= ClusterWire.Limits.maxHeartbeatMilliseconds else {
            throw ValidationError("--heartbeat-ms must be 10 … \(ClusterWire.Limits.maxHeartbeatMilliseconds)")
        }
        guard (2...ClusterWire.Limits.maxLiveness).contains(liveness) else { throw ValidationError("--liveness must be 2 … \(ClusterWire.Limits.maxLiveness)") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must not be negative") }
        if curvePublicKey != nil || curveAllow != nil, curveSecretKey == nil {
            throw ValidationError("--curve-public-key and --curve-allow need --curve-secret-key")
        }
    }

    func run() throws {
        let log = try logging.bootstrap(role: "coordinator")
        var configuration = try makeConfiguration()
        ShutdownSignals.install()
        let endpoint = try metrics.serve(log: log)
        configuration.metrics = endpoint?.registry
        defer { endpoint?.stop() }
        let coordinator: Coordinator
        let outcome: CoordinatorOutcome
        do {
            coordinator = try Coordinator(configuration: configuration, logger: log, stopRequests: { ShutdownSignals.count })
            outcome = try coordinator.run()
        } catch let error as CoordinatorError {
            throw CommandFailure(error.description)
        } catch let error as JournalError {
            throw CommandFailure(error.description)
        } catch let error as CoordinatorStateError {
            throw CommandFailure(error.description)
        } catch let error as PlanningError {
            throw CommandFailure(error.description)
        } catch let error as CorpusError {
            throw CommandFailure(error.description)
        }
        switch outcome {
        case .completed(let summary):
            print(
                "run complete: \(summary.unitsDone) units done, \(summary.unitsFailed) failed, \(summary.tokens) tokens, \(summary.rows) rows per hook; manifest \(summary.manifestPath ?? "")"
            )
            for failure in summary.failures.prefix(20) { print("  failed unit \(failure.unit): \(failure.reason)") }
            if summary.failures.count > 20 { print("  … and \(summary.failures.count - 20) more failed units (see the manifest)") }
        case .drained(let summary):
            print("drained: \(summary.unitsDone) of \(summary.unitsPlanned) planned units done; run the same command again to resume")
            throw ExitCode(ShutdownSignals.exitStatus)
        }
    }

    private func makeConfiguration() throws -> CoordinatorConfiguration {
        let modelDirectory = absolute(model)
        let configPath = modelDirectory + "/config.json"
        let configJSON: [UInt8]
        do {
            configJSON = try readFile(configPath)
        } catch {
            throw CommandFailure("cannot read \(configPath): \(error); --model must be a Hugging Face model folder")
        }
        do {
            let config = try ModelConfig(json: Data(configJSON), path: configPath)
            for name in hook { _ = try HookPoint(name, layers: config.layers) }
        } catch {
            throw CommandFailure("\(error)")
        }
        for path in corpus where !FileManager.default.isReadableFile(atPath: path) {
            throw CommandFailure("cannot read corpus file \(path); check the path")
        }
        let reference = ModelReference(path: modelDirectory, name: modelDisplayName(modelDirectory), configSHA256: SHA256.hash(configJSON))
        let settings = UnitSettings(
            hooks: hook, context: context, dtype: ShardDType(name: dtype)!, skipSpecial: skipSpecial, batchWindows: batchWindows, model: reference,
            outputDirectory: absolute(out), trainerEndpoint: trainer)
        let run = RunDefinition(
            corpus: CorpusSpec(paths: corpus.map(absolute), format: format, textField: textField, unitTokens: unitTokens), settings: settings,
            maxAttempts: maxAttempts)
        var configuration = CoordinatorConfiguration(run: run, bind: bind, statusBind: statusBind, curve: try curveSettings())
        configuration.heartbeatInterval = .milliseconds(heartbeatMs)
        configuration.liveness = liveness
        configuration.drainTimeout = .seconds(drainTimeout)
        configuration.schedulerSlice = .microseconds(schedulerSlice)
        configuration.checkShardFiles = !skipFileChecks
        return configuration
    }

    private func curveSettings() throws -> CoordinatorConfiguration.Curve? {
        guard let curveSecretKey else { return nil }
        do {
            let secret =
                try curvePublicKey.map { try readKeyPair(secretFile: curveSecretKey, publicFile: $0).secretKey }
                ?? CurveKeyPair.parseKeyText(try readKeyFile(curveSecretKey), role: "secret")
            let allowed = try curveAllow.map(readAllowList)
            return CoordinatorConfiguration.Curve(secretKey: secret, allowedClientKeys: allowed)
        } catch let error as CurveKeyError {
            throw CommandFailure("\(error)")
        }
    }
}

/// `path` made absolute against the current directory, so workers elsewhere find it.
func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : URL(fileURLWithPath: path).standardizedFileURL.path
}
