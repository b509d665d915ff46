import Foundation
import Testing

@testable import ActClusterCLI

/// `eval --model`: collect, train and evaluate with the real binary, downstream fidelity included.
@Suite struct EvalModelEndToEnd {
    /// The fixture lines as a jsonl corpus.
    func corpus(in directory: String) throws -> String {
        let lines = try String(contentsOf: fixtures.appendingPathComponent("minilm/lines.txt"), encoding: .utf8)
            .split(separator: "\n").map { String(decoding: try JSONSerialization.data(withJSONObject: ["text": String($0)]), as: UTF8.self) }
        let path = directory + "/corpus.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Collects `hook` of `model` over the corpus and trains a small TopK dictionary on it.
    func trainedDictionary(model: String, hook: String, latents: Int, k: Int, in directory: String) throws -> (shards: String, sae: String) {
        let shards = directory + "/shards", sae = directory + "/sae"
        let collect = try runActcluster([
            "collect", "--model", model, "--hook", hook, "--corpus", try corpus(in: directory), "--format", "jsonl", "--context", "64",
            "--out", shards,
        ])
        try #require(collect.status == 0, "collect failed: \(collect.stderr)")
        let train = try runActcluster([
            "train", "--shards", shards, "--out", sae, "--latents", "\(latents)", "--k", "\(k)", "--batch-tokens", "256", "--tokens", "8192",
            "--lr", "3e-3",
        ])
        try #require(train.status == 0, "train failed: \(train.stderr)")
        return (shards, sae)
    }

    func lastJSON(_ stdout: String) throws -> [String: Any] {
        let line = try #require(stdout.split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func realMiniLMReportsEmbeddingCosine() throws {
        let model = try #require(ProcessInfo.processInfo.environment["ACTCLUSTER_TEST_MODEL"], "deploy/test.sh sets ACTCLUSTER_TEST_MODEL")
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (shards, sae) = try trainedDictionary(model: model, hook: "blocks.3.hook_resid_post", latents: 768, k: 16, in: directory)

        let eval = try runActcluster(["eval", "--sae", sae, "--shards", shards, "--model", model, "--sequences", "16", "--json"])
        try #require(eval.status == 0, "eval failed: \(eval.stderr)")
        print(eval.stdout)
        let figures = try lastJSON(eval.stdout)
        let ev = try #require(figures["explained_variance"] as? Double)
        let l0 = try #require(figures["l0"] as? Double)
        let dead = try #require(figures["dead_fraction"] as? Double)
        let cosine = try #require(figures["embedding_cosine"] as? Double)
        #expect(ev > 0.3 && ev <= 1)
        #expect(abs(l0 - 16) < 1e-9)
        #expect(dead >= 0 && dead <= 1)
        // A dictionary that explains most of the variance keeps the sentence embedding close.
        #expect(cosine > 0.5 && cosine <= 1 + 1e-9)
        #expect(figures["fidelity_sequences"] as? Int == 16)
        #expect(figures["ce_loss_recovered"] == nil)
        #expect(eval.stdout.contains("embedding   cosine"))

        // Another model's config.json: refused with both digests, before any pass.
        let other = try runActcluster(["eval", "--sae", sae, "--shards", shards, "--model", fixtures.appendingPathComponent("tiny-bert").path])
        #expect(other.status != 0)
        #expect(other.stderr.contains("SHA-256"), "\(other.stderr)")
    }

    @Test func causalLMReportsCELossRecovered() throws {
        let model = fixtures.appendingPathComponent("tiny-gpt2").path
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (shards, sae) = try trainedDictionary(model: model, hook: "blocks.1.hook_resid_pre", latents: 128, k: 8, in: directory)

        for extra in [[], ["--text-file", fixtures.appendingPathComponent("minilm/lines.txt").path, "--context", "32"]] {
            let eval = try runActcluster(["eval", "--sae", sae, "--shards", shards, "--model", model, "--json"] + extra)
            try #require(eval.status == 0, "eval failed: \(eval.stderr)")
            print(eval.stdout)
            let figures = try lastJSON(eval.stdout)
            for key in ["explained_variance", "l0", "dead_fraction"] { #expect(figures[key] is Double, "\(key) missing") }
            let clean = try #require(figures["ce_loss_clean"] as? Double)
            let spliced = try #require(figures["ce_loss_spliced"] as? Double)
            let ablated = try #require(figures["ce_loss_ablated"] as? Double)
            let recovered = try #require(figures["ce_loss_recovered"] as? Double)
            for loss in [clean, spliced, ablated] { #expect(loss.isFinite && loss > 0) }
            #expect(abs(recovered - (ablated - spliced) / (ablated - clean)) < 1e-9)
            #expect(figures["embedding_cosine"] == nil)
            #expect(eval.stdout.contains(extra.isEmpty ? "shard windows" : "lines of"))
        }
    }
}

/// `eval`'s options: combinations that cannot work are sentences, and the help names them.
@Suite struct EvalCommandOptions {
    func message(_ arguments: [String]) -> String? { validationMessage(EvalCommand.self, arguments) }

    @Test func fidelityOptionsNeedTheModel() {
        let base = ["--sae", "x", "--shards", "y"]
        #expect(message(base + ["--model", "m", "--text-file", "t", "--context", "64", "--sequences", "8"]) == nil)
        #expect(message(base + ["--text-file", "t"])?.contains("only with --model") == true)
        #expect(message(base + ["--sequences", "8"])?.contains("only with --model") == true)
        #expect(message(base + ["--model", "m", "--context", "64"])?.contains("only with --text-file") == true)
        #expect(message(base + ["--model", "m", "--sequences", "0"])?.contains("--sequences must be positive") == true)
        #expect(message(base + ["--model", "m", "--text-file", "t", "--context", "1"])?.contains("at least 2") == true)
    }

    @Test func helpExplainsDownstreamFidelity() {
        let help = ActCluster.helpMessage(for: EvalCommand.self, columns: 200)
        #expect(help.contains("--model <dir>"))
        #expect(help.contains("--text-file <file>"))
        #expect(help.contains("ce_loss_recovered"))
        #expect(help.contains("embedding_cosine"))
    }
}
