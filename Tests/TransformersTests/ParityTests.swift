import Foundation
import SafeTensors
import Testing
import Transformers

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Reference/fixtures")

/// The real all-MiniLM-L6-v2 folder: deploy/test.sh fetches it and sets ACTCLUSTER_TEST_MODEL.
func minilmDirectory() throws -> String {
    let path = try #require(
        ProcessInfo.processInfo.environment["ACTCLUSTER_TEST_MODEL"],
        "set ACTCLUSTER_TEST_MODEL to the all-MiniLM-L6-v2 folder (deploy/test.sh does it)")
    return path
}

/// A reference file: sequences and, per hook, `[rows, width]` activations from transformers.
struct Reference {
    let sequences: [[Int32]]
    let file: SafeTensorsFile

    init(path: String) throws {
        file = try SafeTensorsFile(path: path)
        let tokens = try file.integers("tokens").map { Int32($0) }
        var start = 0
        sequences = try file.integers("lengths").map { length in
            defer { start += Int(length) }
            return Array(tokens[start..<(start + Int(length))])
        }
    }

    var hookNames: [String] { file.tensors.map(\.name).filter { $0.hasPrefix("blocks.") } }
}

/// Largest |a − b|, reported per hook like llm.c's test_gpt2.
func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

@Suite struct TinyFamilies {
    @Test(arguments: ["tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-llama2"])
    func everyHookMatchesTransformers(_ name: String) throws {
        let folder = fixtures.appendingPathComponent(name).path
        let reference = try Reference(path: folder + "/reference.safetensors")
        let model = try TransformerModel(directory: folder)
        let hooks = try model.hooks(reference.hookNames)
        // All sequences in one ragged batch: unequal lengths must not disturb each other.
        let outputs = try model.forward(reference.sequences, hooks: hooks)
        var report: [String] = []
        for point in hooks.points {
            let expected = try reference.file.floats(point.description)
            let actual = try #require(outputs[point])
            let worst = maxDifference(actual, expected)
            report.append("\(point) \(worst)")
            #expect(worst <= 1e-4, "\(name) \(point): max |diff| \(worst)")
        }
        print("\(name) worst |diff| per hook:\n  " + report.joined(separator: "\n  "))
    }

    @Test(arguments: ["tiny-bert", "tiny-gpt2", "tiny-llama"])
    func batchingMatchesRunningAlone(_ name: String) throws {
        let folder = fixtures.appendingPathComponent(name).path
        let reference = try Reference(path: folder + "/reference.safetensors")
        let model = try TransformerModel(directory: folder)
        let hooks = try model.hooks(["blocks.1.hook_resid_post"])
        let point = hooks.points[0]
        model.threads = 2
        let batched = try #require(try model.forward(reference.sequences, hooks: hooks)[point])
        model.threads = 1
        let alone = try reference.sequences.flatMap { try model.forward([$0], hooks: hooks)[point]! }
        // Only float reassociation inside the GEMMs (blocking depends on the row count) may differ.
        #expect(maxDifference(batched, alone) <= 1e-4)
    }

    @Test func llama3RopeFrequenciesMatchTransformers() throws {
        for name in ["tiny-llama", "tiny-llama2"] {
            let folder = fixtures.appendingPathComponent(name).path
            let model = try TransformerModel(directory: folder)
            let expected = try Reference(path: folder + "/reference.safetensors").file.floats("rope.inv_freq")
            let actual = try #require(model.rotaryInverseFrequencies)
            for (a, e) in zip(actual, expected) {
                #expect(abs(a - e) <= 1e-6 * abs(e), "\(name): \(actual) vs \(expected)")
            }
        }
    }

    @Test func shallowHooksStopEarlyAndStillMatch() throws {
        let folder = fixtures.appendingPathComponent("tiny-gpt2").path
        let reference = try Reference(path: folder + "/reference.safetensors")
        let model = try TransformerModel(directory: folder)
        let hooks = try model.hooks(["blocks.0.hook_attn_out", "blocks.0.hook_resid_pre"])
        #expect(hooks.last.description == "blocks.0.hook_attn_out")
        let outputs = try model.forward(reference.sequences, hooks: hooks)
        #expect(outputs.count == 2)
        for point in hooks.points {
            #expect(maxDifference(outputs[point]!, try reference.file.floats(point.description)) <= 1e-4)
        }
    }
}

@Suite struct RealMiniLM {
    @Test func hooksMatchTransformersOnRealText() throws {
        let model = try TransformerModel(directory: try minilmDirectory())
        model.threads = 2
        let reference = try Reference(path: fixtures.appendingPathComponent("minilm/reference.safetensors").path)
        let hooks = try model.hooks(reference.hookNames)
        let outputs = try model.forward(reference.sequences, hooks: hooks)
        var report: [String] = []
        for point in hooks.points {
            let worst = maxDifference(try #require(outputs[point]), try reference.file.floats(point.description))
            report.append("\(point) \(worst)")
            #expect(worst <= 1e-4, "MiniLM \(point): max |diff| \(worst)")
        }
        print("MiniLM worst |diff| per hook:\n  " + report.joined(separator: "\n  "))
    }
}
