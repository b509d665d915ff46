import Foundation
import Platform
import SafeTensors
import Shards
import Testing

@testable import ActClusterCLI

/// Shard files for command tests: two units of one hook and one unit of another.
struct ShardFixture {
    let folder: String
    let rows: [ShardRows]
    let paths: [String]

    init(_ label: String) throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var rows: [ShardRows] = []
        var paths: [String] = []
        let model = ModelIdentity(name: "tiny", configJSON: Array("{}".utf8))
        for (unit, hook, count) in [(UInt64(0), "blocks.0.hook_resid_post", 70), (1, "blocks.0.hook_resid_post", 45), (0, "blocks.1.hook_mlp_out", 30)] {
            var shard = ShardRows(width: 5)
            for row in 0..<count {
                shard.activations += (0..<5).map { Float(row) * 0.25 + Float($0) - Float(unit) }
                shard.tokens.append(Int32(100 + row))
                shard.documents.append(Int64(unit) * 10 + Int64(row / 20))
                shard.windows.append(Int64(unit) * 1000 + Int64(row / 16))
                shard.positions.append(Int32(row % 16))
            }
            let path = folder + "/unit-\(unit).\(hook).shard"
            let writer = try ShardWriter(
                path: path, header: ShardHeader(dtype: .bf16, width: 5, blockRows: 16, hook: hook, model: model, unitID: unit))
            try writer.append(shard)
            try writer.finish()
            rows.append(shard)
            paths.append(path)
        }
        self.rows = rows
        self.paths = paths
    }

    func remove() { try? FileManager.default.removeItem(atPath: folder) }
}

@Suite struct VerifyCommandTests {
    @Test func intactFilesPassAndDamagedOnesFailWithFileBlockExpectedAndFound() throws {
        let fixture = try ShardFixture("verify")
        defer { fixture.remove() }
        let good = try VerifyCommand.parse(fixture.paths + [fixture.folder])
        let (lines, problems) = good.check()
        #expect(problems == 0)
        #expect(lines.first == "ok     \(fixture.paths[0]) (70 rows, 5 blocks)")
        try good.run()

        var bytes = try readFile(fixture.paths[1])
        let block = try ShardReader(path: fixture.paths[1]).blocks[1]
        bytes[block.offset + 10] ^= 0x01
        try AtomicFile.write(bytes, to: fixture.paths[1])
        let bad = try VerifyCommand.parse([fixture.paths[0], fixture.paths[1]])
        let (badLines, badProblems) = bad.check()
        #expect(badProblems == 1)
        #expect(badLines.contains { $0.hasPrefix("FAILED \(fixture.paths[1]): block 1: CRC-32C of the stored block bytes: expected 0x") }, "\(badLines)")
        #expect(throws: CommandFailure.self) { try bad.run() }
        #expect(throws: CommandFailure.self) { try VerifyCommand.parse([fixture.folder + "/missing.shard"]).run() }
    }
}

@Suite struct ExportCommandTests {
    @Test func safetensorsHoldsActivationsAndEveryMetadataColumn() throws {
        let fixture = try ShardFixture("export-st")
        defer { fixture.remove() }
        let out = fixture.folder + "/out.safetensors"
        try ExportCommand.parse([fixture.paths[0], fixture.paths[1], "--format", "safetensors", "--out", out]).run()
        let file = try SafeTensorsFile(path: out)
        let expected = fixture.rows[0].activations + fixture.rows[1].activations
        #expect(try file.info("activations").shape == [115, 5] && file.info("activations").dtype == .f32)
        // bf16 storage: the values are multiples of 1/4 below 64, exact in bf16 up to 8 bits of mantissa.
        let bf16 = FloatConversion.floats(fromBFloat16: FloatConversion.bfloat16(expected))
        #expect(try file.floats("activations") == bf16)
        #expect(try file.info("tokens").dtype == .i32 && file.info("doc").dtype == .i64)
        #expect(try file.info("window").dtype == .i64 && file.info("pos").dtype == .i32)
        #expect(try file.integers("tokens") == (fixture.rows[0].tokens + fixture.rows[1].tokens).map(Int64.init))
        #expect(try file.integers("doc") == fixture.rows[0].documents + fixture.rows[1].documents)
        #expect(try file.integers("window") == fixture.rows[0].windows + fixture.rows[1].windows)
        #expect(try file.integers("pos") == (fixture.rows[0].positions + fixture.rows[1].positions).map(Int64.init))
        #expect(file.metadata["hook"] == "blocks.0.hook_resid_post" && file.metadata["stored_dtype"] == "bf16")
    }

    @Test func npyHasAVersion1HeaderAndFloat32Rows() throws {
        let fixture = try ShardFixture("export-npy")
        defer { fixture.remove() }
        let out = fixture.folder + "/out.npy"
        try ExportCommand.parse([fixture.folder, "--hook", "blocks.1.hook_mlp_out", "--format", "npy", "--out", out]).run()
        let bytes = try readFile(out)
        #expect(Array(bytes[0..<6]) == [0x93] + Array("NUMPY".utf8))
        #expect(bytes[6] == 1 && bytes[7] == 0)
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (30, 5), }"))
        #expect(header.hasSuffix("\n"))
        let data = Array(bytes[(10 + headerLength)...])
        #expect(data.count == 30 * 5 * 4)
        let floats = (0..<150).map { i in
            Float(bitPattern: UInt32(data[4 * i]) | UInt32(data[4 * i + 1]) << 8 | UInt32(data[4 * i + 2]) << 16 | UInt32(data[4 * i + 3]) << 24)
        }
        #expect(floats == FloatConversion.floats(fromBFloat16: FloatConversion.bfloat16(fixture.rows[2].activations)))
    }

    @Test func severalHooksNeedAChoice() throws {
        let fixture = try ShardFixture("export-hooks")
        defer { fixture.remove() }
        let out = fixture.folder + "/out.npy"
        do {
            try ExportCommand.parse([fixture.folder, "--format", "npy", "--out", out]).run()
            Issue.record("export of two hooks without --hook must fail")
        } catch let error as CommandFailure {
            #expect(error.description == "the inputs hold 2 hooks; pick one with --hook: blocks.0.hook_resid_post, blocks.1.hook_mlp_out")
        }
        #expect(throws: CommandFailure.self) { try ExportCommand.parse([fixture.folder, "--hook", "nope", "--format", "npy", "--out", out]).run() }
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(throws: (any Error).self) { try ExportCommand.parse([fixture.folder, "--format", "csv", "--out", out]) }
    }
}

@Suite struct InspectAndBenchCommandTests {
    @Test func inspectShowsHeaderBlocksRowsAndRatios() throws {
        let fixture = try ShardFixture("inspect")
        defer { fixture.remove() }
        let lines = try InspectCommand.parse([fixture.paths[0], "--blocks"]).report()
        #expect(lines.contains("hook     blocks.0.hook_resid_post"))
        #expect(lines.contains("dtype    bf16, width 5"))
        #expect(lines.contains("rows     70 in 5 blocks of up to 16"))
        #expect(lines.contains { $0.hasPrefix("ratio    ") && $0.contains("vs raw fp32 (1400 bytes)") && $0.contains("vs raw bf16 (700 bytes)") })
        #expect(lines.filter { $0.hasPrefix("    4     6") }.count == 1, "\(lines)")
        let folder = try InspectCommand.parse([fixture.folder]).report()
        #expect(folder.last?.hasPrefix("total    3 shards, 145 rows") == true, "\(folder)")
    }

    @Test func benchCodecExplainsThatItNeedsAnInputOrAModel() throws {
        do {
            try BenchCodecCommand.parse([]).run()
            Issue.record("bench codec without --input or --model must fail")
        } catch let error as CommandFailure {
            #expect(error.description.hasPrefix("give --input F.safetensors (an `actcluster export` file) or --model DIR"))
        }
    }

    @Test func benchCodecCollectsItsOwnActivationsWithAModel() throws {
        let corpus = try scratchDirectory() + "/text.txt"
        try String(repeating: "Sparse dictionaries find features in the residual stream of a transformer.\n", count: 40)
            .write(toFile: corpus, atomically: true, encoding: .utf8)
        let run = try runActcluster([
            "bench", "codec", "--model", fixtures.appendingPathComponent("tiny-bert").path, "--corpus", corpus,
            "--hook", "blocks.0.hook_resid_post", "--repeat", "1", "--json",
        ])
        try #require(run.status == 0, "\(run.stderr)")
        let last = try #require(run.stdout.split(separator: "\n").last)
        let figures = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: [String: Double]])
        #expect(Set(figures.keys) == ["bf16", "fp16", "fp32"])
        #expect((figures["bf16"]?["ratio"] ?? 0) > 1)
    }

    @Test func benchCodecRunsOnAnExport() throws {
        let fixture = try ShardFixture("bench")
        defer { fixture.remove() }
        let out = fixture.folder + "/export.safetensors"
        try ExportCommand.parse([fixture.paths[0], "--format", "safetensors", "--out", out]).run()
        let input = try CodecBenchInput(path: out)
        let result = try CodecBench.run(input, dtype: .bf16, blockRows: 16, repeats: 1)
        #expect(result.activationBytes == 70 * 5 * 2 && result.ratio > 0.5)
    }

    @Test func rootHelpListsTheShardCommands() {
        let help = ActCluster.helpMessage(columns: 100)
        for command in ["inspect", "verify", "export", "bench"] { #expect(help.contains(command)) }
        let export = ActCluster.helpMessage(for: ExportCommand.self, columns: 200)
        #expect(export.contains("USAGE: actcluster export <path> ... --format <format> --out <file> [--hook <name>]"))
    }
}
