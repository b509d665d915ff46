import ArgumentParser
import ClusterProtocol
import Corpus
import Foundation
import Platform
import Shards

/// `actcluster run`: corpus to dictionary in one command, on this machine.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Collect a corpus with N local workers and train a dictionary on the live stream, in one command.",
        discussion: """
            Starts a coordinator, --workers workers and the live trainer as child processes of \
            this binary on loopback (ports chosen automatically). Workers stream activation \
            batches to the trainer while they write shards. If collection ends before the \
            trainer's --tokens budget is spent, training goes on over the finished shards \
            (`actcluster train --resume`). Workers drop batches the trainer cannot take in time \
            (--stream-policy drop), so collection never waits for training. At the end the dictionary is exported for SAELens \
            and a summary is printed.

            Layout of --out: shards/ (shards, manifest.json, coordinator.journal), sae/ \
            (checkpoints, metrics.jsonl), saelens/ (cfg.json, sae_weights.safetensors) and \
            logs/ (one logfmt file per process: `tail -f OUT/logs/*` watches the run).

            Ctrl-C stops everything cleanly: the coordinator drains, workers finish their \
            units, the trainer checkpoints. Run the same command again to resume.
            """
    )

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Corpus files, read in the order given.", valueName: "path"))
    var corpus: [String]

    @Option(help: "Corpus format: jsonl or txt.")
    var format: CorpusFormat

    @Option(help: "The JSON field that holds the text (jsonl only).")
    var textField = "text"

    @Option(help: ArgumentHelp("Hugging Face model folder.", valueName: "dir"))
    var model: String

    @Option(help: ArgumentHelp("Hook to collect and train on, e.g. blocks.3.hook_resid_post.", valueName: "name"))
    var hook: String

    @Option(help: "Worker processes.")
    var workers = 2

    @Option(help: "Forward threads per worker.")
    var threadsPerWorker = 1

    @Option(help: ArgumentHelp("Output folder (reuse it to resume).", valueName: "dir"))
    var out: String

    @Option(help: "Tokens per window.")
    var context = 128

    @Option(help: "Approximate tokens per unit.")
    var unitTokens = 16_384

    @Option(help: "Storage type of activations: bf16, fp16 or fp32.")
    var dtype = "bf16"

    @Option(help: "Dictionary architecture: topk, batchtopk or relu.")
    var arch = "topk"

    @Option(help: "Active latents per token.")
    var k = 32

    @Option(help: ArgumentHelp("Latents as a multiple of the width (default 16 unless --latents).", valueName: "N"))
    var expansion: Int?

    @Option(help: ArgumentHelp("Latents m, instead of --expansion.", valueName: "M"))
    var latents: Int?

    @Option(help: "Peak learning rate (default 2e-4 / √(m / 2¹⁴)).")
    var lr: Double?

    @Option(help: "Tokens per optimiser step.")
    var batchTokens = 4096

    @Option(help: "Training token budget (more than one pass over the shards if the corpus is smaller).")
    var tokens = 2_000_000

    @Option(help: "Threads of the trainer.")
    var trainerThreads = 1

    @Option(help: "Seed of the dictionary's initial weights and shuffle.")
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("Serve the trainer's Prometheus metrics at HOST:PORT/metrics (the live trainer's, then those of training over the shards).", valueName: "host:port"))
    var metricsBind: String?

    func validate() throws {
        guard !corpus.isEmpty else { throw ValidationError("give at least one --corpus file") }
        guard workers >= 1, threadsPerWorker >= 1, trainerThreads >= 1 else {
            throw ValidationError("--workers, --threads-per-worker and --trainer-threads must be at least 1")
        }
        guard ["topk", "batchtopk", "relu"].contains(arch) else { throw ValidationError("--arch must be topk, batchtopk or relu") }
        guard expansion == nil || latents == nil else { throw ValidationError("give --expansion or --latents, not both") }
        guard tokens >= batchTokens else { throw ValidationError("--tokens must be at least --batch-tokens (\(batchTokens))") }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if workers * threadsPerWorker > cores {
            print("note: \(workers) workers × \(threadsPerWorker) threads oversubscribe this machine's \(cores) cores")
        }
    }

    private var shards: String { absolute(out) + "/shards" }
    private var sae: String { absolute(out) + "/sae" }
    private var logs: String { absolute(out) + "/logs" }

    func run() throws {
        for folder in [shards, sae, logs] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        ShutdownSignals.install()
        let clock = ContinuousClock()
        let start = clock.now
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let display = ProgressDisplay(interactive: isatty(STDOUT_FILENO) == 1)

        // Trainer first, so no batch is streamed into the void.
        let resuming = FileManager.default.fileExists(atPath: sae + "/checkpoints/latest")
        let trainer = try Child(
            binary, ["trainer", "--bind", "tcp://127.0.0.1:0", "--out", sae, "--model-name", modelDisplayName(model)]
                + dictionaryArguments + (resuming ? ["--resume"] : []), log: logs + "/trainer.log")
        let trainerEndpoint = try trainer.waitForValue(event: "trainer_listening", key: "endpoint")
        let coordinator = try Child(
            binary,
            ["coordinator", "--corpus"] + corpus.map(absolute) + [
                "--format", format.rawValue, "--text-field", textField, "--model", absolute(model), "--hook", hook, "--out", shards, "--bind",
                "tcp://127.0.0.1:0", "--status-bind", "tcp://127.0.0.1:0", "--context", "\(context)", "--unit-tokens", "\(unitTokens)",
                "--dtype", dtype, "--trainer", trainerEndpoint,
            ], log: logs + "/coordinator.log")
        let endpoint = try coordinator.waitForValue(event: "coordinator_listening", key: "endpoint")
        // Ports chosen by the kernel and read back: a port found free beforehand may be taken by then.
        let statusEndpoint = try coordinator.waitForValue(event: "coordinator_listening", key: "status_endpoint")
        let workerProcesses = try (0..<workers).map {
            // drop: collection never waits for the trainer (which may stop at its budget);
            // the shards are the exact record, and training finishes over them.
            try Child(
                binary, ["worker", "--connect", endpoint, "--threads", "\(threadsPerWorker)", "--name", "local-\($0)", "--stream-policy", "drop"],
                log: logs + "/worker-\($0).log")
        }
        display.line("collecting with \(workers) workers × \(threadsPerWorker) threads; logs in \(logs)")

        // Collection, with progress, until the coordinator exits.
        var signalled = 0
        var lastStatus: StatusReport?
        var lastPoll = clock.now - .seconds(1)
        while coordinator.isRunning {
            if ShutdownSignals.count > signalled {
                signalled = ShutdownSignals.count
                display.line(signalled == 1 ? "stopping: the coordinator drains, workers finish their units, the trainer checkpoints" : "stopping now")
                coordinator.signal(SIGINT)
                trainer.signal(SIGINT)
                if signalled >= 2 { for worker in workerProcesses { worker.signal(SIGINT) } }
            }
            if clock.now - lastPoll >= .milliseconds(500) {
                lastPoll = clock.now
                if let status = try? StatusCommand.query(statusEndpoint, timeout: 0.5, includeWorkers: false) { lastStatus = status }
                display.progress(collection: lastStatus, training: trainer.lastEvent("train_step"))
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let collectionSeconds = (clock.now - start).seconds
        for worker in workerProcesses { worker.wait() }
        guard coordinator.status == 0 else {
            trainer.signal(SIGINT)
            trainer.wait()
            display.finish()
            if signalled > 0 {
                print("stopped; the journal and the checkpoint are kept. Run the same command again to resume.")
                throw ExitCode(ShutdownSignals.exitStatus)
            }
            throw CommandFailure("the coordinator failed (exit \(coordinator.status)); see \(logs)/coordinator.log")
        }

        // Collection is over: give the last batches a moment to arrive, then the live trainer
        // checkpoints and stops, and training finishes its budget over the shards.
        if trainer.lastEvent("batch_received") != nil { Thread.sleep(forTimeInterval: 2) }
        /// Waits for a training process, passing new signals on and showing its progress.
        func follow(_ child: Child) {
            while child.isRunning {
                if ShutdownSignals.count > signalled {
                    signalled = ShutdownSignals.count
                    child.signal(SIGINT)
                }
                display.progress(collection: lastStatus, training: child.lastEvent("train_step"))
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        trainer.signal(SIGINT)
        follow(trainer)
        guard trainer.status == 0 else { throw CommandFailure("the live trainer failed (exit \(trainer.status)); see \(logs)/trainer.log") }
        if signalled > 0 {
            display.finish()
            print("stopped; run the same command again to resume")
            throw ExitCode(ShutdownSignals.exitStatus)
        }
        let trainedLive = Int(trainer.lastEvent("train_step").flatMap { logValue("tokens", in: $0) } ?? "0") ?? 0
        var final = trainer.lastEvent("train_step")
        if trainedLive < tokens {
            let checkpoint = FileManager.default.fileExists(atPath: sae + "/checkpoints/latest")
            let offline = try Child(
                binary, ["train", "--shards", shards] + (checkpoint ? ["--resume"] : []) + dictionaryArguments + ["--out", sae], log: logs + "/train.log")
            follow(offline)
            guard offline.status == 0 else {
                display.finish()
                if signalled > 0 { throw ExitCode(ShutdownSignals.exitStatus) }
                throw CommandFailure("training on the shards failed (exit \(offline.status)); see \(logs)/train.log")
            }
            final = offline.lastEvent("train_step") ?? final
        }
        let trainingSeconds = (clock.now - start).seconds - collectionSeconds
        display.finish()

        let export = absolute(out) + "/saelens"
        let exported = try Child(binary, ["export-sae", sae, "--format", "saelens", "--out", export], log: logs + "/export.log")
        exported.wait()
        guard exported.status == 0 else { throw CommandFailure("the SAELens export failed; see \(logs)/export.log") }
        try printSummary(collectionSeconds: collectionSeconds, trainingSeconds: trainingSeconds, final: final, export: export)
    }

    private var dictionaryArguments: [String] {
        var arguments = ["--hook", hook, "--arch", arch, "--k", "\(k)", "--batch-tokens", "\(batchTokens)", "--tokens", "\(tokens)", "--threads", "\(trainerThreads)", "--seed", "\(seed)"]
        if let expansion { arguments += ["--expansion", "\(expansion)"] }
        if let latents { arguments += ["--latents", "\(latents)"] }
        if let lr { arguments += ["--lr", "\(lr)"] }
        // The live trainer and `train` run one after the other, so they can share the address.
        if let metricsBind { arguments += ["--metrics-bind", metricsBind] }
        return arguments
    }

    private func printSummary(collectionSeconds: Double, trainingSeconds: Double, final: String?, export: String) throws {
        let manifest = try ShardManifest.read(shards)
        let bytes = manifest.shards.reduce(0) { $0 + $1.bytes }
        let raw = manifest.statistics.values.reduce(0) { $0 + $1.count * $1.mean.count * 4 }
        // Without a step in this invocation (the budget was spent before), the run's last metrics.
        var last = final
        if last == nil, let text = readWholeFile(sae + "/metrics.jsonl"), let line = text.split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        {
            last = " " + object.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        func metric(_ key: String) -> String { last.flatMap { logValue(key, in: $0) } ?? "?" }
        print("""
            collection: \(manifest.rows) tokens in \(manifest.shards.count) shards, \(bytes >> 20) MiB on disk against \(raw >> 20) MiB raw fp32 \
            (\(String(format: "%.2f", Double(raw) / Double(max(bytes, 1))))×), \(String(format: "%.1f", collectionSeconds)) s\
            \(manifest.failedUnits?.isEmpty == false ? ", \(manifest.failedUnits!.count) units FAILED (see the manifest)" : "")
            training: step \(metric("step")), \(metric("tokens")) tokens, EV \(metric("explained_variance")), L0 \(metric("l0")), \
            dead \(metric("dead_fraction")), \(String(format: "%.1f", trainingSeconds)) s after collection
            manifest:   \(shards)/\(ShardManifest.fileName)
            checkpoint: \(sae)/checkpoints/latest
            SAELens:    \(export)
            logs:       \(logs)
            """)
    }
}

/// A child process of this binary whose log goes to a file.
final class Child {
    private let process = Process()
    let logPath: String
    /// Where this process's lines start in its log (a rerun appends to the same files).
    private let logStart: Int

    init(_ binary: String, _ arguments: [String], log: String) throws {
        logPath = log
        logStart = ((try? FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? nil) ?? 0
        // Foundation starts the child in a process group of its own, so Ctrl-C at the terminal
        // reaches it once, through us, not twice (a second signal means "stop now").
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments + (log.hasSuffix("/export.log") ? [] : ["--log-file", log])
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        let errors = log + ".stderr"
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errors)
        try process.run()
    }

    var isRunning: Bool { process.isRunning }
    var status: Int32 { process.terminationStatus }
    func signal(_ number: Int32) { if process.isRunning { kill(process.processIdentifier, number) } }
    func wait() { process.waitUntilExit() }

    /// The last log line of `event`, if any.
    func lastEvent(_ event: String) -> String? {
        let text = readWholeFile(logPath) ?? ""
        let ours = text.utf8.count > logStart ? String(decoding: text.utf8.dropFirst(logStart), as: UTF8.self) : ""
        return ours.split(separator: "\n").last { $0.contains(" event=\(event) ") }.map(String.init)
    }

    /// Waits for `event` and returns its `key` field; fails if the process exits first.
    func waitForValue(event: String, key: String, timeout: Duration = .seconds(60)) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = lastEvent(event), let value = logValue(key, in: line) { return value }
            if !process.isRunning {
                let detail = (readWholeFile(logPath + ".stderr") ?? "").split(separator: "\n").last.map(String.init) ?? "see \(logPath)"
                throw CommandFailure("\(process.arguments?.first { !$0.hasPrefix("/") } ?? "a child") exited with status \(process.terminationStatus): \(detail)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw CommandFailure("no \(event) within \(timeout); see \(logPath)")
    }
}

/// The value of `key` in a logfmt line (unquoted values only).
func logValue(_ key: String, in line: String) -> String? {
    guard let range = line.range(of: " \(key)=") else { return nil }
    return String(line[range.upperBound...].prefix { $0 != " " })
}

/// Progress bars on a terminal; a plain line every 10 s otherwise.
final class ProgressDisplay {
    let interactive: Bool
    private var lastPlain = ContinuousClock.now
    private var drawn = false

    init(interactive: Bool) { self.interactive = interactive }

    func line(_ text: String) {
        if drawn { print("") }
        drawn = false
        print(text)
    }

    func progress(collection: StatusReport?, training: String?) {
        let collect: String
        if let status = collection {
            let total = status.unitsTotal.map(String.init) ?? "≥\(status.unitsPlanned)"
            let fraction = status.unitsTotal.map { Double(status.unitsDone) / Double(max($0, 1)) }
            collect = "collect \(bar(fraction)) \(status.unitsDone)/\(total) units, \(status.tokens) tok, \(Int(status.tokensPerSecond)) tok/s, ETA \(status.etaSeconds.map(StatusCommand.duration) ?? "?")"
        } else {
            collect = "collect: starting"
        }
        let train = training.map {
            "train step \(logValue("step", in: $0) ?? "?"), \(logValue("tokens", in: $0) ?? "?") tok, EV \(logValue("explained_variance", in: $0) ?? "?"), L0 \(logValue("l0", in: $0) ?? "?"), dead \(logValue("dead_fraction", in: $0) ?? "?")"
        } ?? "train: waiting for batches"
        if interactive {
            print("\r\u{1B}[2K\(collect) | \(train)", terminator: "")
            fflush(nil)
            drawn = true
        } else if ContinuousClock.now - lastPlain >= .seconds(10) {
            lastPlain = ContinuousClock.now
            print("progress \(collect) | \(train)")
        }
    }

    func finish() {
        if drawn { print("") }
        drawn = false
    }

    private func bar(_ fraction: Double?) -> String {
        guard let fraction else { return "[" + String(repeating: "·", count: 20) + "]" }
        let filled = Int((fraction * 20).rounded(.down))
        return "[" + String(repeating: "#", count: filled) + String(repeating: "·", count: 20 - filled) + "]"
    }
}
