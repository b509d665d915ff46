import Foundation
import Platform
import SafeTensors
import Testing

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Reference/fixtures")

private func scratchDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct ReadingReferenceFiles {
    /// Files written by Python's safetensors; the expectations come from reference.json,
    /// written by the same script from the tokenizer, not from our reader.
    @Test func tokensAndShapesMatchTheReferenceJSON() throws {
        let folder = fixtures.appendingPathComponent("tiny-bert")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("reference.json"))) as! [String: Any]
        let ids = (json["ids"] as! [[Int]]).flatMap { $0 }
        let file = try SafeTensorsFile(path: folder.appendingPathComponent("reference.safetensors").path)
        #expect(try file.integers("tokens") == ids.map(Int64.init))
        #expect(try file.integers("lengths").map(Int.init) == (json["ids"] as! [[Int]]).map(\.count))
        let declared = json["tensors"] as! [String: [String: Any]]
        #expect(Set(file.tensors.map(\.name)) == Set(declared.keys))
        for tensor in file.tensors {
            #expect(tensor.shape == declared[tensor.name]!["shape"] as! [Int], "\(tensor.name)")
        }
        let rows = ids.count
        #expect(try file.floats("blocks.0.hook_resid_pre").count == rows * 32)
    }

    @Test func modelWeightsHaveMetadataAndFloats() throws {
        let file = try SafeTensorsFile(path: fixtures.appendingPathComponent("tiny-bert/model.safetensors").path)
        #expect(file.metadata["format"] == "pt")
        let weight = try file.info("embeddings.LayerNorm.weight")
        #expect(weight.dtype == .f32 && weight.shape == [32])
        #expect(throws: SafeTensorsError.self) { try file.info("no.such.tensor") }
        #expect(throws: SafeTensorsError.self) { try file.integers("embeddings.LayerNorm.weight") }
    }
}

@Suite struct WritingAndReadingBack {
    @Test func roundTripAllWrittenTypes() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/out.safetensors"
        let floats: [Float] = [0, -1.5, .pi, 65504, -.infinity, 1e-30]
        try SafeTensorsWriter.write(
            [
                OutputTensor(name: "blocks.0.hook_resid_post", shape: [2, 3], floats: floats),
                OutputTensor(name: "tokens", shape: [3], int32s: [101, -7, 2_000_000]),
                OutputTensor(name: "doc \"quoted\"", shape: [1], int64s: [1 << 40]),
                OutputTensor(name: "empty", shape: [0, 4], floats: []),
            ], metadata: ["model": "tiny"], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.tensors.map(\.name) == ["blocks.0.hook_resid_post", "tokens", "doc \"quoted\"", "empty"])
        #expect(try file.floats("blocks.0.hook_resid_post") == floats)
        #expect(try file.integers("tokens") == [101, -7, 2_000_000])
        #expect(try file.integers("doc \"quoted\"") == [1 << 40])
        #expect(try file.info("empty").shape == [0, 4])
        #expect(file.metadata == ["model": "tiny"])
        // The header is padded so that the data section is 8-byte aligned.
        let bytes = try readFile(path)
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(headerLength % 8 == 0)
    }

    @Test func aWriterThatLiesAboutItsSizeLeavesNoFile() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/bad.safetensors"
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsWriter.write(
                [OutputTensor(name: "x", dtype: .f32, shape: [4]) { try $0.write([1, 2, 3]) }], to: path)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }
}

@Suite struct RejectingBadFiles {
    private func write(_ bytes: [UInt8]) throws -> String {
        let path = try scratchDirectory() + "/bad.safetensors"
        try AtomicFile.write(bytes, to: path)
        return path
    }

    private func header(_ json: String, data: [UInt8] = []) -> [UInt8] {
        let body = Array(json.utf8)
        return (0..<8).map { UInt8(truncatingIfNeeded: body.count >> (8 * $0)) } + body + data
    }

    @Test(arguments: [
        ("too short", [UInt8]([1, 2, 3])),
        ("huge header length", [UInt8]([0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0x7B, 0x7D])),
    ])
    func truncatedOrAlien(_ label: String, _ bytes: [UInt8]) throws {
        let path = try write(bytes)
        let error = try #require(throws: SafeTensorsError.self) { try SafeTensorsFile(path: path) }
        #expect(error.description.hasPrefix(path))
    }

    @Test(arguments: [
        "not json",
        #"{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}"#,
        #"{"x": {"dtype": "Q8", "shape": [2], "data_offsets": [0, 2]}}"#,
        #"{"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
        #"{"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}"#,
        #"{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "y": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}"#,
    ])
    func malformedHeaders(_ json: String) throws {
        let path = try write(header(json, data: [UInt8](repeating: 0, count: 8)))
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(path: path) }
    }

    @Test func missingFileNamesThePath() {
        let error = #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(path: "/nonexistent/model.safetensors") }
        #expect(error?.description.contains("/nonexistent/model.safetensors") == true)
    }
}
