import Foundation
import SafeTensors

/// The tensors of a checkpoint (one file or a sharded set), handed out by name with their
/// shapes checked. After loading, ``finish()`` rejects any tensor nobody asked for, so a
/// checkpoint of a different architecture cannot load quietly.
final class WeightStore {
    private var files: [String: SafeTensorsFile] = [:]
    private var location: [String: String] = [:]
    private var taken: Set<String> = []
    let description: String

    init(directory: String) throws {
        let single = directory + "/model.safetensors"
        let index = directory + "/model.safetensors.index.json"
        var names: [String]
        if FileManager.default.fileExists(atPath: single) {
            names = ["model.safetensors"]
            description = single
        } else if FileManager.default.fileExists(atPath: index) {
            guard let data = FileManager.default.contents(atPath: index),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let map = object["weight_map"] as? [String: String]
            else { throw ModelError.invalidConfig(path: index, problem: "no weight_map object") }
            names = Array(Set(map.values)).sorted()
            description = index
        } else {
            throw ModelError.missingFile(
                path: single, hint: "the folder needs model.safetensors or model.safetensors.index.json (PyTorch .bin is not read)")
        }
        for name in names {
            let file = try SafeTensorsFile(path: directory + "/" + name)
            files[name] = file
            for tensor in file.tensors { location[tensor.name] = name }
        }
    }

    func contains(_ name: String) -> Bool { location[name] != nil }

    /// The tensor as Float (converted from F16/BF16 once), after checking its shape.
    func take(_ name: String, _ shape: [Int]) throws -> FloatBuffer {
        guard let fileName = location[name], let file = files[fileName] else {
            throw ModelError.missingTensor(name: name, file: description)
        }
        let info = try file.info(name)
        guard info.shape == shape else { throw ModelError.wrongShape(name: name, expected: shape, found: info.shape) }
        taken.insert(name)
        return FloatBuffer(try file.floats(name))
    }

    /// Marks tensors the architecture has but the forward pass does not use (heads, buffers).
    func ignore(where predicate: (String) -> Bool) {
        for name in location.keys where predicate(name) { taken.insert(name) }
    }

    func finish() throws {
        if let extra = location.keys.sorted().first(where: { !taken.contains($0) }) {
            throw ModelError.unexpectedTensor(name: extra, file: description)
        }
        files.removeAll()
    }

    /// The prefix the checkpoint uses ("" for a bare model, "bert." or "model." for heads).
    func prefix(probing name: String, candidates: [String]) -> String {
        candidates.first { contains($0 + name) } ?? ""
    }
}
