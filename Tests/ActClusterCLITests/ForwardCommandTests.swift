import Foundation
import SafeTensors
import Testing

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Reference/fixtures")

/// The `actcluster` executable built next to this test bundle.
func actclusterBinary() throws -> String {
    // The test process is the .xctest binary in the build folder, beside the executable.
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let folder = URL(fileURLWithPath: executable).deletingLastPathComponent()
    for candidate in [folder, folder.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("actcluster").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    Issue.record("actcluster is not built next to \(folder.path); run swift build --build-tests first")
    throw CancellationError()
}

/// Runs the real binary as a child process and returns its exit status and output.
func runActcluster(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try actclusterBinary())
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

func scratchDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct ForwardEndToEnd {
    /// Tokenizer, truncation, model and output file together, against transformers.
    @Test func realMiniLMLinesMatchTransformers() throws {
        let model = try #require(ProcessInfo.processInfo.environment["ACTCLUSTER_TEST_MODEL"], "deploy/test.sh sets ACTCLUSTER_TEST_MODEL")
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let reference = try SafeTensorsFile(path: fixtures.appendingPathComponent("minilm/reference.safetensors").path)
        let hooks = reference.tensors.map(\.name).filter { $0.hasPrefix("blocks.") }
        let out = directory + "/out.safetensors"
        let result = try runActcluster(
            ["forward", "--model", model, "--text-file", fixtures.appendingPathComponent("minilm/lines.txt").path,
             "--out", out, "--threads", "2", "--batch", "8"] + hooks.flatMap { ["--hook", $0] })
        try #require(result.status == 0, "forward failed: \(result.stderr)")
        #expect(result.stderr.contains("event=forward_done"))

        let tokensJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("minilm/tokens.json"))) as! [String: Any]
        let lines = tokensJSON["lines"] as! [[String: Any]]
        let expectedIDs = lines.map { ($0["ids_truncated_128"] as! [Int]).map(Int64.init) }
        let output = try SafeTensorsFile(path: out)
        let tokens = try output.integers("tokens")
        #expect(tokens == expectedIDs.flatMap { $0 })

        // Rows of the lines the reference ran, located by each line's offset in the output.
        var offsets: [Int] = [0]
        for ids in expectedIDs { offsets.append(offsets.last! + ids.count) }
        let lineIndices = try reference.integers("line_indices").map { Int($0) }
        for hook in hooks {
            let width = try reference.info(hook).shape[1]
            let actual = try output.floats(hook)
            let expected = try reference.floats(hook)
            var referenceRow = 0, worst: Float = 0
            for line in lineIndices {
                for row in offsets[line]..<offsets[line + 1] {
                    for column in 0..<width {
                        worst = max(worst, abs(actual[row * width + column] - expected[referenceRow * width + column]))
                    }
                    referenceRow += 1
                }
            }
            #expect(referenceRow == reference.tensors.first { $0.name == hook }!.shape[0])
            #expect(worst <= 1e-4, "\(hook): max |diff| \(worst)")
        }
    }

    @Test func badInputGetsAClearErrorAndNoOutput() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let text = directory + "/bad.txt"
        try Data([0x68, 0x69, 0x0A, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: text))
        let tinyBert = fixtures.appendingPathComponent("tiny-bert").path
        let out = directory + "/out.safetensors"
        let invalid = try runActcluster(["forward", "--model", tinyBert, "--hook", "blocks.0.hook_resid_post", "--text-file", text, "--out", out])
        #expect(invalid.status != 0)
        #expect(invalid.stderr.contains("line 2 of \(text) is not valid UTF-8"))
        #expect(!FileManager.default.fileExists(atPath: out))

        try "hello\n".write(toFile: text, atomically: true, encoding: .utf8)
        let unknownHook = try runActcluster(["forward", "--model", tinyBert, "--hook", "blocks.9.hook_resid_post", "--text-file", text, "--out", out])
        #expect(unknownHook.status != 0)
        #expect(unknownHook.stderr.contains("valid hooks for this model"))

        let missingModel = try runActcluster(["forward", "--model", directory, "--hook", "blocks.0.hook_resid_post", "--text-file", text, "--out", out])
        #expect(missingModel.status != 0)
        #expect(missingModel.stderr.contains("config.json is missing"))
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
