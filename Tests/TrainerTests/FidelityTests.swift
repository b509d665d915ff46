import Foundation
import SafeTensors
import Shards
import Testing
import Transformers

@testable import Trainer

/// One case of Tests/Reference/make_splice_fixtures.py: a small fixed SAE spliced into a tiny
/// model with PyTorch forward hooks, and what transformers computed.
struct SpliceCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Reference/fixtures")

    let folder: String
    let modelDirectory: String
    let expected: SafeTensorsFile
    let figures: [String: Double]
    let sequences: [[Int32]]

    init(_ name: String) throws {
        folder = Self.fixtures.appendingPathComponent("splice/\(name)").path
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/expected.json"))) as! [String: Any]
        modelDirectory = Self.fixtures.appendingPathComponent(meta["model"] as! String).path
        figures = (meta["figures"] as! [String: Any]).compactMapValues { ($0 as? NSNumber)?.doubleValue }
        expected = try SafeTensorsFile(path: folder + "/expected.safetensors")
        let tokens = try expected.integers("tokens").map { Int32($0) }
        var start = 0
        sequences = try expected.integers("lengths").map { length in
            defer { start += Int(length) }
            return Array(tokens[start..<(start + Int(length))])
        }
    }

    func fidelity(threads: Int = 2) throws -> FidelityEvaluator {
        let model = try TransformerModel(directory: modelDirectory, languageModelHead: true)
        model.threads = threads
        return try FidelityEvaluator(model: model, dictionary: try Checkpoint.loadModel(folder + "/sae").0, threads: threads)
    }
}

/// Worst |a − b| / max(1, |b|).
func worstRelative(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) values against \(b.count)")
    return zip(a, b).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
}

/// The dictionary's reconstruction spliced into the forward pass, against the same splice
/// done with a PyTorch forward hook.
@Suite struct FidelityTests {
    static let cases = [
        "gpt2-resid-pre", "gpt2-attn-out", "llama-resid-post", "bert-resid-post", "bert-attn-out", "bert-mlp-out",
    ]

    @Test(arguments: cases)
    func splicedPassMatchesTorch(_ name: String) throws {
        let fixture = try SpliceCase(name)
        let fidelity = try fixture.fidelity()
        let model = fidelity.model

        // The reconstruction alone, from the very rows torch saw (normalisation scale ≠ 1).
        let raw = try fixture.expected.floats("hook.clean")
        let reconstruction = raw.withUnsafeBufferPointer {
            Array(fidelity.evaluator.add(raw: $0, rows: raw.count / model.width(of: fidelity.point)))
        }
        let reconstructionDifference = worstRelative(reconstruction, try fixture.expected.floats("hook.reconstruction"))
        let spliced = try model.finalHiddenStates(fixture.sequences, splice: fidelity.splice)
        let splicedDifference = worstRelative(spliced, try fixture.expected.floats("final.spliced"))
        print("\(name): reconstruction \(reconstructionDifference), spliced final hidden state \(splicedDifference)")
        #expect(reconstructionDifference <= 1e-5)
        #expect(splicedDifference <= 1e-4)

        if model.config.isCausal {
            let losses = try model.nextTokenLosses(fixture.sequences, splice: fidelity.splice)
            let lossDifference = worstRelative(losses, try fixture.expected.floats("loss.spliced"))
            print("\(name): spliced per-token loss \(lossDifference)")
            #expect(lossDifference <= 1e-5)
        } else {
            // Pooled per sequence as sentence-transformers does on the padded batch.
            let pooled = try fixture.expected.floats("pooled.spliced"), d = model.config.hidden
            var row = 0, worst = 0.0
            for (index, sequence) in fixture.sequences.enumerated() {
                let ours = FidelityEvaluator.meanPooled(spliced, rows: row..<(row + sequence.count), width: d)
                for c in 0..<d { worst = max(worst, abs(ours[c] - Double(pooled[index * d + c]))) }
                row += sequence.count
            }
            #expect(worst <= 1e-4, "\(name): pooled embedding max |diff| \(worst)")
        }
    }

    @Test(arguments: cases)
    func reportedFiguresMatchTorch(_ name: String) throws {
        let fixture = try SpliceCase(name)
        let fidelity = try fixture.fidelity()
        // Two batches, the second a single sequence, to exercise the running sums.
        try fidelity.add(Array(fixture.sequences.dropLast()))
        try fidelity.add([fixture.sequences.last!])
        let report = fidelity.report
        #expect(report.sequences == fixture.sequences.count)
        #expect(report.tokens == fixture.sequences.reduce(0) { $0 + $1.count })
        var lines: [String] = []
        func check(_ key: String, _ value: Double?, tolerance: Double) {
            guard let expected = fixture.figures[key] else { return }
            guard let value else {
                Issue.record("\(name): no \(key) reported")
                return
            }
            lines.append("\(key) \(value) vs \(expected)")
            #expect(abs(value - expected) <= tolerance, "\(name) \(key): \(value) vs torch \(expected)")
        }
        check("embedding_cosine", report.embeddingCosine, tolerance: 1e-5)
        check("ce_loss_clean", report.ceLossClean, tolerance: 1e-4)
        check("ce_loss_spliced", report.ceLossSpliced, tolerance: 1e-4)
        check("ce_loss_ablated", report.ceLossAblated, tolerance: 1e-4)
        // A ratio of differences: the fixture keeps |ablated − clean| above 0.1.
        check("ce_loss_recovered", report.ceLossRecovered, tolerance: 5e-4)
        #expect((report.embeddingCosine == nil) == fidelity.model.config.isCausal)
        #expect((report.ceLossRecovered == nil) == !fidelity.model.config.isCausal)
        print("\(name): " + lines.joined(separator: ", "))
    }

    @Test func aDictionaryOfAnotherModelIsRefused() throws {
        let gpt2Case = try SpliceCase("gpt2-resid-pre")
        let (dictionary, _) = try Checkpoint.loadModel(gpt2Case.folder + "/sae")
        // Same width and hook names, another config.json.
        let llama = try TransformerModel(directory: try SpliceCase("llama-resid-post").modelDirectory)
        do {
            _ = try FidelityEvaluator(model: llama, dictionary: dictionary, threads: 1)
            Issue.record("a dictionary of tiny-gpt2 was accepted for tiny-llama")
        } catch let error as TrainerError {
            #expect(error.description.contains("SHA-256"))
            #expect(error.description.contains(dictionary.config.modelConfigSHA256))
        }
        // Hooks that do not exist or do not fit are refused before any pass.
        let gpt2 = try TransformerModel(directory: gpt2Case.modelDirectory)
        for (hook, model, phrase) in [
            ("blocks.9.hook_resid_pre", gpt2, "unknown hook"), ("blocks.1.mlp.hook_post", gpt2, "width 32"),
        ] {
            dictionary.config.hook = hook
            dictionary.config.modelConfigSHA256 = ""
            do {
                _ = try FidelityEvaluator(model: model, dictionary: dictionary, threads: 1)
                Issue.record("\(hook) was accepted")
            } catch {
                #expect("\(error)".contains(phrase), "\(hook): \(error)")
            }
        }
    }
}

/// Token windows rebuilt from the shards' columns.
@Suite struct ShardWindows {
    func writeShard(_ folder: String, unit: UInt64, windows: [[Int32]], skipping skipped: Set<Int> = []) throws {
        let hook = "blocks.0.hook_resid_post"
        let header = ShardHeader(dtype: .fp32, width: 4, blockRows: 8, hook: hook, model: ModelIdentity(name: "test"), unitID: unit)
        let writer = try ShardWriter(path: folder + "/" + ShardManifest.shardFileName(unit: unit, hook: hook), header: header)
        var rows = ShardRows(width: 4)
        for (index, window) in windows.enumerated() {
            for (position, token) in window.enumerated() where !skipped.contains(position) {
                rows.activations += [1, 2, 3, 4]
                rows.tokens.append(token)
                rows.documents.append(0)
                rows.windows.append(Int64(unit << 32) | Int64(index))
                rows.positions.append(Int32(position))
            }
        }
        try writer.append(rows)
        _ = try writer.finish()
    }

    @Test func windowsComeBackWholeAcrossBlocksAndFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("windows-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Windows longer than a block (8 rows) and a window of one token.
        let first: [[Int32]] = [Array(1...13), [7], Array(20...29)]
        let second: [[Int32]] = [Array(40...45), Array(50...61)]
        try writeShard(folder, unit: 0, windows: first)
        try writeShard(folder, unit: 1, windows: second)
        let source = try ShardSource(directory: folder, hook: nil)
        #expect(try source.tokenWindows(limit: 100) == first + second)
        #expect(try source.tokenWindows(limit: 4) == first + [second[0]])
        #expect(try source.tokenWindows(limit: 1) == [first[0]])
    }

    @Test func gapsFromSkippedSpecialTokensAreAClearError() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("windows-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try writeShard(folder, unit: 0, windows: [Array(1...10)], skipping: [0, 9])
        let source = try ShardSource(directory: folder, hook: nil)
        do {
            _ = try source.tokenWindows(limit: 10)
            Issue.record("a window without its first position was rebuilt")
        } catch let error as TrainerError {
            #expect(error.description.contains("--skip-special"))
            #expect(error.description.contains("--text-file"))
        }
    }
}
