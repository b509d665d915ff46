import Foundation
import SafeTensors
import Shards
import Testing
import Tokenizers
import Transformers

/// `collect` run as a real process, then checked with independent paths: the tokenizer on
/// each document, and a separate forward pass of each window.
@Suite struct CollectEndToEnd {
    private func corpus(in directory: String) throws -> (path: String, texts: [Int64: String]) {
        var lines: [String] = [], texts: [Int64: String] = [:]
        for index in 0..<30 {
            let text = "Doc \(index): " + String(repeating: "the model reads café text and writes features. ", count: 1 + index % 6)
            texts[Int64(lines.count)] = text
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: ["text": text]), as: UTF8.self))
            if index == 4 { lines.append("{broken json") }
            if index == 9 { lines.append(#"{"title": "no text"}"#) }
            if index == 14 { lines.append(#"{"text": "  "}"#) }
        }
        let path = directory + "/corpus.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return (path, texts)
    }

    /// The tokens packing adds: the model's window prefix and suffix and its end-of-text
    /// separator (content can hold other special tokens, such as [UNK]).
    private func packingSpecials(_ modelPath: String) throws -> Set<Int32> {
        let tokenizer = try Tokenizer(contentsOfFile: modelPath + "/tokenizer.json")
        let model = try TransformerModel(directory: modelPath)
        return Set(tokenizer.singleSequencePrefix + tokenizer.singleSequenceSuffix + [model.endOfTextTokenID].compactMap { $0 })
    }

    @Test(arguments: ["tiny-bert", "tiny-gpt2"])
    func exportedRowsLeadBackToEveryDocumentAndMatchAnIndependentForwardPass(_ name: String) throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let modelPath = fixtures.appendingPathComponent(name).path
        let (corpusPath, texts) = try corpus(in: directory)
        let out = directory + "/shards"
        let hook = "blocks.1.hook_resid_post"
        let run = try runActcluster([
            "collect", "--model", modelPath, "--hook", hook, "--hook", "blocks.0.mlp.hook_post", "--corpus", corpusPath,
            "--format", "jsonl", "--context", "24", "--unit-tokens", "300", "--dtype", "fp32", "--out", out,
        ])
        try #require(run.status == 0, "collect failed: \(run.stderr)")
        #expect(run.stderr.contains("event=input_skipped file=\(corpusPath) line=6 reason=invalid_json"))

        let manifest = try ShardManifest.read(out)
        #expect(manifest.skipped == ["invalid_json": 1, "missing_field": 1, "empty_document": 1])
        #expect(Set(manifest.shards.map(\.unit)).count > 1, "the corpus should span several units")
        #expect(try runActcluster(["verify", out]).status == 0)

        let exported = directory + "/export.safetensors"
        let export = try runActcluster(["export", out, "--format", "safetensors", "--hook", hook, "--out", exported])
        try #require(export.status == 0, "export failed: \(export.stderr)")
        let file = try SafeTensorsFile(path: exported)
        let tokens = try file.integers("tokens").map { Int32($0) }
        let documents = try file.integers("doc"), windows = try file.integers("window"), positions = try file.integers("pos")
        let activations = try file.floats("activations")
        #expect(manifest.rows == 2 * tokens.count, "manifest rows count every shard of both hooks")

        // Every document's content tokens, in order, are exactly its tokenizer ids.
        let tokenizer = try Tokenizer(contentsOfFile: modelPath + "/tokenizer.json")
        let special = try packingSpecials(modelPath)
        var perDocument: [Int64: [Int32]] = [:]
        for (token, document) in zip(tokens, documents) where !special.contains(token) {
            perDocument[document, default: []].append(token)
        }
        #expect(Set(perDocument.keys) == Set(texts.keys))
        for (document, text) in texts {
            #expect(perDocument[document] == tokenizer.encode(text, addSpecialTokens: false), "document \(document)")
        }

        // Each window alone through the model gives the stored activations.
        let model = try TransformerModel(directory: modelPath)
        let hooks = try model.hooks([hook])
        let width = model.width(of: hooks.points[0])
        var rowsByWindow: [Int64: [Int]] = [:]
        for (row, window) in windows.enumerated() { rowsByWindow[window, default: []].append(row) }
        var worst: Float = 0
        for (_, rows) in rowsByWindow {
            #expect(rows.map { positions[$0] } == (0..<Int64(rows.count)).map { $0 }, "positions run 0..<n within a window")
            #expect(rows.count <= 24)
            let alone = try model.forward([rows.map { tokens[$0] }], hooks: hooks)[hooks.points[0]]!
            for (index, row) in rows.enumerated() {
                for column in 0..<width {
                    worst = max(worst, abs(alone[index * width + column] - activations[row * width + column]))
                }
            }
        }
        #expect(worst <= 1e-4, "max |diff| \(worst)")
    }

    @Test func skipSpecialDropsSpecialRowsOnly() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let modelPath = fixtures.appendingPathComponent("tiny-bert").path
        let (corpusPath, _) = try corpus(in: directory)
        let run = try runActcluster([
            "collect", "--model", modelPath, "--hook", "blocks.0.hook_resid_post", "--corpus", corpusPath,
            "--format", "jsonl", "--context", "24", "--skip-special", "--out", directory + "/shards",
        ])
        try #require(run.status == 0, "collect failed: \(run.stderr)")
        let exported = directory + "/export.safetensors"
        #expect(try runActcluster(["export", directory + "/shards", "--format", "safetensors", "--out", exported]).status == 0)
        let tokens = try SafeTensorsFile(path: exported).integers("tokens").map { Int32($0) }
        let special = try packingSpecials(modelPath)
        #expect(!tokens.isEmpty && !tokens.contains { special.contains($0) })
    }

    @Test func impossibleOptionsAreRejectedWithASentence() throws {
        let tinyBert = fixtures.appendingPathComponent("tiny-bert").path
        let tooLong = try runActcluster([
            "collect", "--model", tinyBert, "--hook", "blocks.0.hook_resid_post", "--corpus", "/dev/null", "--format", "txt",
            "--context", "512", "--out", "/tmp/never",
        ])
        #expect(tooLong.status != 0)
        #expect(tooLong.stderr.contains("exceeds the model's 64 positions"))
        let badDtype = try runActcluster([
            "collect", "--model", tinyBert, "--hook", "blocks.0.hook_resid_post", "--corpus", "/dev/null", "--format", "txt",
            "--dtype", "int8", "--out", "/tmp/never",
        ])
        #expect(badDtype.stderr.contains("--dtype must be bf16, fp16 or fp32"))
    }
}
