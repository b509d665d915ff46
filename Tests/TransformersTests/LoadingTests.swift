import Foundation
import SafeTensors
import Testing
import Transformers

/// A copy of a fixture model folder whose config or weights a test can damage.
private struct ScratchModel {
    let path: String

    init(copying name: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("model-\(UUID().uuidString)").path
        try FileManager.default.copyItem(atPath: fixtures.appendingPathComponent(name).path, toPath: path)
    }

    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: path + "/config.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: url)
    }

    /// Rewrites model.safetensors after `edit` changes the list of (name, shape, floats).
    func editWeights(_ edit: (inout [(String, [Int], [Float])]) -> Void) throws {
        let file = try SafeTensorsFile(path: path + "/model.safetensors")
        var tensors = try file.tensors.map { ($0.name, $0.shape, try file.floats($0.name)) }
        edit(&tensors)
        try SafeTensorsWriter.write(
            tensors.map { OutputTensor(name: $0.0, shape: $0.1, floats: $0.2) }, to: path + "/model.safetensors")
    }

    func loadError() throws -> ModelError {
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try #require(throws: ModelError.self) { _ = try TransformerModel(directory: path) }
    }
}

@Suite struct LoaderValidation {
    @Test func missingTensorIsNamed() throws {
        let model = try ScratchModel(copying: "tiny-bert")
        try model.editWeights { $0.removeAll { $0.0 == "encoder.layer.1.output.dense.bias" } }
        #expect(try model.loadError() == .missingTensor(name: "encoder.layer.1.output.dense.bias", file: model.path + "/model.safetensors"))
    }

    @Test func extraTensorIsNamed() throws {
        let model = try ScratchModel(copying: "tiny-gpt2")
        try model.editWeights { $0.append(("transformer.h.9.mlp.c_fc.bias", [4], [1, 2, 3, 4])) }
        let error = try model.loadError()
        #expect(error == .unexpectedTensor(name: "transformer.h.9.mlp.c_fc.bias", file: model.path + "/model.safetensors"))
    }

    @Test func misshapenTensorIsNamed() throws {
        let model = try ScratchModel(copying: "tiny-llama")
        try model.editWeights { tensors in
            let index = tensors.firstIndex { $0.0 == "model.layers.0.self_attn.k_proj.weight" }!
            tensors[index] = (tensors[index].0, [32, 16], tensors[index].2)
        }
        #expect(try model.loadError() == .wrongShape(name: "model.layers.0.self_attn.k_proj.weight", expected: [16, 32], found: [32, 16]))
    }

    @Test func unknownModelTypeAndUnsupportedOptions() throws {
        let unknown = try ScratchModel(copying: "tiny-bert")
        try unknown.editConfig { $0["model_type"] = "mamba" }
        #expect(try unknown.loadError() == .unsupportedModelType("mamba"))

        let relative = try ScratchModel(copying: "tiny-bert")
        try relative.editConfig { $0["position_embedding_type"] = "relative_key" }
        #expect(try relative.loadError() == .unsupportedOption(name: "position_embedding_type", value: "relative_key", family: "bert"))

        let rope = try ScratchModel(copying: "tiny-llama2")
        try rope.editConfig { $0["rope_scaling"] = ["rope_type": "yarn", "factor": 4.0] }
        #expect(try rope.loadError() == .unsupportedOption(name: "rope_type", value: "yarn", family: "llama"))
    }

    @Test func missingFolderSaysWhatToDo() throws {
        let error = try #require(throws: ModelError.self) { _ = try TransformerModel(directory: "/nonexistent/model") }
        #expect(error.description.contains("config.json"))
        #expect(error.description.contains("--model"))
    }
}

@Suite struct HookNames {
    @Test func unknownHookListsTheValidNames() throws {
        let model = try TransformerModel(directory: fixtures.appendingPathComponent("tiny-bert").path)
        let error = try #require(throws: ModelError.self) { _ = try model.hooks(["blocks.3.hook_resid_post"]) }
        #expect(error.description.contains("unknown hook blocks.3.hook_resid_post"))
        #expect(error.description.contains("blocks.{0..2}.hook_resid_post"))
        #expect(error.description.contains("blocks.{0..2}.mlp.hook_post"))
        #expect(throws: ModelError.self) { _ = try model.hooks([]) }
        #expect(try model.hooks(["blocks.2.mlp.hook_post"]).points.map(\.description) == ["blocks.2.mlp.hook_post"])
    }

    @Test func badTokensAndOverlongSequencesAreErrors() throws {
        let model = try TransformerModel(directory: fixtures.appendingPathComponent("tiny-bert").path)
        let hooks = try model.hooks(["blocks.0.hook_resid_post"])
        #expect(throws: ModelError.tokenOutOfRange(token: 600, vocabularySize: 600)) {
            _ = try model.forward([[2, 600]], hooks: hooks)
        }
        #expect(throws: ModelError.sequenceTooLong(length: 65, maximum: 64)) {
            _ = try model.forward([[Int32](repeating: 5, count: 65)], hooks: hooks)
        }
        #expect(try model.forward([], hooks: hooks)[hooks.points[0]] == [])
    }
}

@Suite struct StorageFormats {
    private func bf16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        return UInt16((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)  // round to nearest even
    }

    /// F16 and BF16 files must load to exactly the floats their values represent, and a
    /// sharded checkpoint must load like a single file.
    @Test(arguments: ["F16", "BF16", "sharded"])
    func loadsLikeTheEquivalentFloat32Checkpoint(_ format: String) throws {
        let reduced = try ScratchModel(copying: "tiny-llama")
        let float32 = try ScratchModel(copying: "tiny-llama")
        defer {
            try? FileManager.default.removeItem(atPath: reduced.path)
            try? FileManager.default.removeItem(atPath: float32.path)
        }
        let source = try SafeTensorsFile(path: reduced.path + "/model.safetensors")
        var tensors: [(String, [Int], [Float])] = try source.tensors.map { ($0.name, $0.shape, try source.floats($0.name)) }
        switch format {
        case "F16":
            tensors = tensors.map { ($0.0, $0.1, $0.2.map { Float(Float16($0)) }) }
            try SafeTensorsWriter.write(tensors.map { name, shape, values in
                OutputTensor(name: name, dtype: .f16, shape: shape) { writer in
                    try values.map { Float16($0).bitPattern }.withUnsafeBytes { try writer.write($0) }
                }
            }, to: reduced.path + "/model.safetensors")
        case "BF16":
            tensors = tensors.map { ($0.0, $0.1, $0.2.map { Float(bitPattern: UInt32(self.bf16($0)) << 16) }) }
            try SafeTensorsWriter.write(tensors.map { name, shape, values in
                OutputTensor(name: name, dtype: .bf16, shape: shape) { writer in
                    try values.map { self.bf16($0) }.withUnsafeBytes { try writer.write($0) }
                }
            }, to: reduced.path + "/model.safetensors")
        default:
            try FileManager.default.removeItem(atPath: reduced.path + "/model.safetensors")
            let halves = [Array(tensors.prefix(tensors.count / 2)), Array(tensors.dropFirst(tensors.count / 2))]
            var map: [String: String] = [:]
            for (index, half) in halves.enumerated() {
                let name = "model-0000\(index + 1)-of-00002.safetensors"
                try SafeTensorsWriter.write(half.map { OutputTensor(name: $0.0, shape: $0.1, floats: $0.2) }, to: reduced.path + "/" + name)
                for tensor in half { map[tensor.0] = name }
            }
            try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": map])
                .write(to: URL(fileURLWithPath: reduced.path + "/model.safetensors.index.json"))
        }
        try float32.editWeights { $0 = tensors }

        let sequences: [[Int32]] = [[480, 5, 17, 300], [480, 42]]
        let a = try TransformerModel(directory: reduced.path), b = try TransformerModel(directory: float32.path)
        let hooks = try a.hooks(["blocks.2.hook_resid_post"])
        #expect(try a.forward(sequences, hooks: hooks) == b.forward(sequences, hooks: hooks))
    }
}
