import Foundation
import Shards
import Testing
import ZeroMQ

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@testable import ActClusterCLI

/// One scrape of a `/metrics` endpoint, taken with Foundation's HTTP client (not our own
/// code), parsed into samples.
struct MetricsScrape {
    let text: String
    /// `name{labels}` → value.
    let samples: [String: Double]

    init(_ address: String) throws {
        final class Response: @unchecked Sendable {
            var value: (status: Int, type: String, body: String)?
            var error: (any Error)?
        }
        let response = Response(), done = DispatchSemaphore(value: 0)
        let request = URLRequest(url: URL(string: "http://\(address)/metrics")!, timeoutInterval: 5)
        URLSession.shared.dataTask(with: request) { data, answer, error in
            if let http = answer as? HTTPURLResponse, let data {
                response.value = (http.statusCode, http.value(forHTTPHeaderField: "Content-Type") ?? "", String(decoding: data, as: UTF8.self))
            } else {
                response.error = error
            }
            done.signal()
        }.resume()
        guard done.wait(timeout: .now() + 10) == .success, let value = response.value else {
            throw HarnessFailure("no answer from http://\(address)/metrics: \(response.error.map { "\($0)" } ?? "timed out")")
        }
        guard value.status == 200, value.type.hasPrefix("text/plain; version=0.0.4") else {
            throw HarnessFailure("http://\(address)/metrics answered \(value.status) \(value.type)")
        }
        text = value.body
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let number = Double(fields[1]) { samples[String(fields[0])] = number }
        }
        self.samples = samples
    }

    subscript(_ name: String) -> Double? { samples[name] }

    /// The family has a HELP line with text and the given TYPE.
    func declares(_ name: String, _ type: String) -> Bool {
        let lines = text.split(separator: "\n")
        return lines.contains("# TYPE \(name) \(type)") && lines.contains { $0.hasPrefix("# HELP \(name) ") && $0.count > "# HELP \(name) ".count }
    }
}

/// The training figures every trainer publishes, checked for names, types and sane values.
func expectTrainingMetrics(_ scrape: MetricsScrape, batchTokens: Int, k: Int, budget: Int) {
    let gauges = [
        "step", "tokens_budget", "explained_variance", "fvu", "l0", "dead_fraction", "loss", "aux_loss", "learning_rate", "tokens_per_second",
    ]
    for name in gauges { #expect(scrape.declares("actcluster_trainer_\(name)", "gauge"), "\(name): \(scrape.text)") }
    #expect(scrape.declares("actcluster_trainer_tokens_trained_total", "counter"))
    let step = scrape["actcluster_trainer_step"] ?? 0
    #expect(step > 0)
    // One window is set at once, so step and tokens agree.
    #expect(scrape["actcluster_trainer_tokens_trained_total"] == step * Double(batchTokens), "\(scrape.text)")
    #expect(scrape["actcluster_trainer_tokens_budget"] == Double(budget))
    let ev = scrape["actcluster_trainer_explained_variance"] ?? .nan
    #expect(ev.isFinite && ev <= 1)
    #expect(abs((scrape["actcluster_trainer_fvu"] ?? .nan) - (1 - ev)) < 1e-6)
    let dead = scrape["actcluster_trainer_dead_fraction"] ?? .nan
    #expect(dead >= 0 && dead <= 1)
    let l0 = scrape["actcluster_trainer_l0"] ?? .nan
    #expect(l0 > 0 && l0 <= Double(k))
    #expect((scrape["actcluster_trainer_tokens_per_second"] ?? 0) > 0)
    #expect((scrape["actcluster_trainer_learning_rate"] ?? 0) > 0)
}

/// `train` and `trainer` with `--metrics-bind`, as processes, scraped over real HTTP while
/// they train; they are then stopped with SIGINT, so nothing depends on how fast they are.
@Suite struct TrainerMetricsEndToEnd {
    /// Four shards of 600 fp32 rows (width 16): a few sparse directions plus noise.
    func writeShards(_ folder: String, hook: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var state: UInt64 = 7
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24)
        }
        let width = 16, n = 600
        for unit in 0..<4 {
            var rows = [Float](repeating: 0, count: n * width)
            for r in 0..<n {
                for _ in 0..<2 { rows[r * width + Int(uniform() * Float(width)) % width] += 1 + uniform() }
                for c in 0..<width { rows[r * width + c] += 0.05 * (uniform() - 0.5) }
            }
            let header = ShardHeader(dtype: .fp32, width: width, blockRows: 128, hook: hook, model: ModelIdentity(name: "synthetic"), unitID: UInt64(unit))
            let writer = try ShardWriter(path: folder + "/" + ShardManifest.shardFileName(unit: UInt64(unit), hook: hook), header: header)
            try writer.append(
                ShardRows(
                    width: width, activations: rows, tokens: [Int32](repeating: 1, count: n), documents: (0..<n).map { Int64($0 / 50) },
                    windows: (0..<n).map { Int64($0 / 50) }, positions: (0..<n).map { Int32($0 % 50) }))
            _ = try writer.finish()
        }
    }

    @Test func trainServesItsMetricsOverHTTP() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hook = "blocks.0.hook_resid_post", shards = directory + "/shards"
        try writeShards(shards, hook: hook)
        // A budget it never reaches: the test ends the run.
        let budget = 1_000_000_000
        let train = try ClusterRole(
            "train",
            [
                "train", "--shards", shards, "--out", directory + "/run", "--latents", "64", "--k", "4", "--batch-tokens", "128", "--buffer-tokens", "512",
                "--tokens", "\(budget)", "--threads", "1", "--log-every", "3", "--checkpoint-every", "0", "--metrics-bind", "127.0.0.1:0",
            ], logPath: directory + "/train.log")
        // Port 0, and the port read back: a port picked free beforehand may be taken by then.
        let address = try train.waitForValue(event: "metrics_listening", key: "address")
        #expect(address.hasPrefix("127.0.0.1:") && !address.hasSuffix(":0"), "\(address)")
        var scrape: MetricsScrape?
        try waitUntil("train publishes a metrics window", timeout: .seconds(120)) {
            scrape = try? MetricsScrape(address)
            return (scrape?["actcluster_trainer_step"] ?? 0) > 0 || !train.process.isRunning
        }
        let metrics = try #require(scrape, "train: \(train.log)")
        expectTrainingMetrics(metrics, batchTokens: 128, k: 4, budget: budget)
        #expect(metrics["actcluster_trainer_messages_received_total"] == nil, "the live trainer's counters belong to `trainer` only")

        // The port is taken now: a second run says so in a sentence, before any work.
        let taken = try runActcluster(["train", "--shards", shards, "--out", directory + "/second", "--metrics-bind", address])
        #expect(taken.status != 0)
        #expect(taken.stderr.contains("cannot listen for metrics on \(address)") && taken.stderr.contains("choose another --metrics-bind"), "\(taken.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/second"))
        let noPort = try runActcluster(["train", "--shards", shards, "--out", directory + "/third", "--metrics-bind", "127.0.0.1"])
        #expect(noPort.status != 0)
        #expect(noPort.stderr.contains("--metrics-bind 127.0.0.1 is not HOST:PORT"), "\(noPort.stderr)")

        kill(train.process.processIdentifier, SIGINT)
        #expect(train.exitStatus(within: .seconds(120)) == 0, "train: \(train.log)")
        #expect(FileManager.default.fileExists(atPath: directory + "/run/checkpoints/latest/sae.safetensors"))
    }

    @Test func liveTrainerServesItsReceiverAndTrainingMetrics() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hook = "blocks.0.hook_resid_post", width = 16, budget = 100_000
        let trainer = try ClusterRole(
            "trainer",
            [
                "trainer", "--bind", "tcp://127.0.0.1:0", "--hook", hook, "--out", directory + "/run", "--latents", "64", "--k", "4", "--batch-tokens",
                "128", "--tokens", "\(budget)", "--buffer-tokens", "256", "--threads", "1", "--log-every", "1", "--metrics-bind", "127.0.0.1:0",
            ], logPath: directory + "/trainer.log")
        let address = try trainer.waitForValue(event: "metrics_listening", key: "address")
        #expect(!address.hasSuffix(":0"), "port 0 is resolved in the log")
        let endpoint = try trainer.waitForValue(event: "trainer_listening", key: "endpoint")

        // Before any batch: the receiver's figures are there, training's are not yet.
        let idle = try MetricsScrape(address)
        #expect(idle["actcluster_trainer_messages_received_total"] == 0, "\(idle.text)")
        #expect(idle["actcluster_trainer_queue_capacity_tokens"] == 512, "4 batches by default")
        #expect(idle["actcluster_trainer_step"] == nil)

        let context = try ZeroMQContext()
        let push = try context.socket(.push)
        try push.set(.linger, 5000)
        try push.connect(endpoint)
        let batches = try sampleBatches(hook: hook, width: width)
        let otherHook = try sampleBatches(hook: "blocks.1.hook_resid_post", width: width, unit: 4, count: 1)[0]
        for frames in batches { try push.send(multipart: frames) }
        try push.send(multipart: batches[4])  // a duplicate
        try push.send(multipart: [Array("nonsense".utf8)])  // rejected
        try push.send(multipart: otherHook)
        push.close()

        // Every message taken, the queue drained into the shuffle buffer, and steps trained;
        // the trainer then waits for more (no --idle-timeout) until the signal.
        var scrape: MetricsScrape?
        try waitUntil("the trainer takes every message and trains", timeout: .seconds(120)) {
            scrape = try? MetricsScrape(address)
            guard let scrape else { return !trainer.process.isRunning }
            // A message is counted as taken before its outcome is: wait for the outcomes too.
            let outcomes = ["duplicate", "rejected", "other_hook"].map { scrape["actcluster_trainer_batches_dropped_total{reason=\"\($0)\"}"] ?? 0 }
            return (scrape["actcluster_trainer_messages_received_total"] == 9 && scrape["actcluster_trainer_queued_tokens"] == 0
                && outcomes.reduce(0, +) == 3 && scrape["actcluster_trainer_batches_accepted_total"] == 6
                && (scrape["actcluster_trainer_step"] ?? 0) > 0) || !trainer.process.isRunning
        }
        let metrics = try #require(scrape, "trainer: \(trainer.log)")
        for name in ["messages_received_total", "batches_accepted_total", "tokens_received_total", "batches_dropped_total"] {
            #expect(metrics.declares("actcluster_trainer_\(name)", "counter"), "\(name): \(metrics.text)")
        }
        #expect(metrics.declares("actcluster_trainer_queued_tokens", "gauge"))
        #expect(metrics["actcluster_trainer_messages_received_total"] == 9, "\(metrics.text)")
        #expect(metrics["actcluster_trainer_batches_accepted_total"] == 6)
        #expect(metrics["actcluster_trainer_tokens_received_total"] == 600)
        #expect(metrics["actcluster_trainer_batches_dropped_total{reason=\"duplicate\"}"] == 1)
        #expect(metrics["actcluster_trainer_batches_dropped_total{reason=\"rejected\"}"] == 1)
        #expect(metrics["actcluster_trainer_batches_dropped_total{reason=\"other_hook\"}"] == 1)
        #expect(metrics["actcluster_trainer_queued_tokens"] == 0)
        expectTrainingMetrics(metrics, batchTokens: 128, k: 4, budget: budget)

        kill(trainer.process.processIdentifier, SIGINT)
        #expect(trainer.exitStatus(within: .seconds(120)) == 0, "trainer: \(trainer.log)")
        #expect(FileManager.default.fileExists(atPath: directory + "/run/checkpoints/latest/sae.safetensors"))
    }
}
