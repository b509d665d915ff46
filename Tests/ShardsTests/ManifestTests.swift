import Foundation
import Platform
import Shards
import Testing

@Suite struct Statistics {
    /// The plain definition: two passes in Float64 over all rows.
    static func reference(_ values: [Float], width: Int) -> (mean: [Double], variance: [Double], meanNorm: Double) {
        let rows = values.count / width
        var mean = [Double](repeating: 0, count: width)
        for row in 0..<rows { for d in 0..<width { mean[d] += Double(values[row * width + d]) } }
        mean = mean.map { $0 / Double(rows) }
        var variance = [Double](repeating: 0, count: width)
        var norms = 0.0
        for row in 0..<rows {
            var squares = 0.0
            for d in 0..<width {
                let value = Double(values[row * width + d])
                variance[d] += (value - mean[d]) * (value - mean[d])
                squares += value * value
            }
            norms += squares.squareRoot()
        }
        return (mean, variance.map { $0 / Double(rows) }, norms / Double(rows))
    }

    func close(_ a: [Double], _ b: [Double], _ tolerance: Double = 1e-12) -> Bool {
        zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) } && a.count == b.count
    }

    @Test func batchesAndMergesMatchTheTwoPassReference() {
        let width = 13
        // A large offset makes the naive sum-of-squares formula lose every digit.
        var rows = makeRows(1000, width: width, seed: 21).activations
        rows = rows.map { $0 + 10_000 }
        let expected = Self.reference(rows, width: width)

        var whole = RunningStatistics(width: width)
        whole.add(rows)
        #expect(whole.count == 1000)
        #expect(close(whole.mean, expected.mean) && close(whole.variance, expected.variance, 1e-9))
        #expect(abs(whole.meanNorm - expected.meanNorm) <= 1e-12 * expected.meanNorm)

        // Uneven batches, merged pairwise in a tree and in a chain, agree with the whole.
        var random = SplitMix(state: 4)
        var parts: [RunningStatistics] = []
        var start = 0
        while start < 1000 {
            let size = min(1 + random.below(150), 1000 - start)
            var part = RunningStatistics(width: width)
            part.add(Array(rows[(start * width)..<((start + size) * width)]))
            parts.append(part)
            start += size
        }
        var chain = RunningStatistics(width: width)
        for part in parts { chain.merge(part) }
        var tree = parts
        while tree.count > 1 {
            var next: [RunningStatistics] = []
            for pair in stride(from: 0, to: tree.count, by: 2) {
                var merged = tree[pair]
                if pair + 1 < tree.count { merged.merge(tree[pair + 1]) }
                next.append(merged)
            }
            tree = next
        }
        // As a coordinator merges reports: count, mean and population variance per part.
        var reported = RunningStatistics(width: width)
        for part in parts { reported.merge(count: part.count, mean: part.mean, variance: part.variance, meanNorm: part.meanNorm) }
        reported.merge(count: 0, mean: [Double](repeating: 5, count: width), variance: [Double](repeating: 5, count: width), meanNorm: 5)
        for merged in [chain, tree[0], reported] {
            #expect(merged.count == 1000)
            #expect(close(merged.mean, expected.mean) && close(merged.variance, expected.variance, 1e-9))
            #expect(abs(merged.meanNorm - expected.meanNorm) <= 1e-12 * expected.meanNorm)
        }
        var empty = RunningStatistics(width: width)
        empty.merge(RunningStatistics(width: width))
        #expect(empty.count == 0 && empty.variance.allSatisfy { $0 == 0 })
    }
}

@Suite struct Manifest {
    func sampleManifest(_ folder: String) throws -> ShardManifest {
        var manifest = ShardManifest(model: testModel, hooks: ["blocks.3.hook_resid_post", "blocks.5.hook_mlp_out"], dtype: .bf16, context: 128)
        for (unit, hook) in [(UInt64(0), "blocks.3.hook_resid_post"), (1, "blocks.3.hook_resid_post"), (0, "blocks.5.hook_mlp_out")] {
            let rows = makeRows(100 + Int(unit), width: 7, seed: unit + 1)
            let file = ShardManifest.shardFileName(unit: unit, hook: hook)
            manifest.add(try writeShard(rows, to: folder + "/" + file, .bf16, blockRows: 32, hook: hook, unit: unit), file: file)
            var statistics = RunningStatistics(width: 7)
            statistics.add(rows.activations)
            manifest.addStatistics(statistics, hook: hook)
        }
        manifest.countSkipped("invalid_utf8", by: 2)
        manifest.countSkipped("empty_document")
        return manifest
    }

    @Test func roundTripsThroughAnAtomicWrite() throws {
        let folder = try temporaryFolder("manifest")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let manifest = try sampleManifest(folder)
        #expect(manifest.rows == 100 + 101 + 100)
        try manifest.write(toDirectory: folder)
        try manifest.write(toDirectory: folder)  // replacing works
        let read = try ShardManifest.read(folder)
        #expect(read == manifest)
        #expect(read.statistics["blocks.3.hook_resid_post"]?.count == 201)
        #expect(read.skipped == ["invalid_utf8": 2, "empty_document": 1])
        #expect(read.model.configSHA256 == testModel.configSHA256Hex)
        // No temporary files are left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        #expect(names.filter { $0.hasPrefix(".") }.isEmpty, "\(names)")
        let text = String(decoding: try readFile(folder + "/manifest.json"), as: UTF8.self)
        #expect(text.contains("\"config_sha256\"") && text.contains("\"mean_norm\"") && text.contains("\"crc32c\""))
        #expect(ShardDirectory.verify(folder).isEmpty)
        #expect(try ShardDirectory.shardFiles(in: folder).map { $0.split(separator: "/").last! } == manifest.shards.map { Substring($0.file) })
    }

    /// JSONEncoder is the reference: the streamed form must be its bytes exactly.
    @Test(arguments: [0, 1, 3])
    func aStreamedManifestIsByteForByteTheEncodedOne(shardCount: Int) throws {
        let folder = try temporaryFolder("manifest-stream")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Hook names with every kind of character JSON escapes.
        var manifest = ShardManifest(model: testModel, hooks: ["a/b", "odd \"hook\" \\ name\t", "ctl\u{01}\n\r\u{08}\u{0C}\u{1F}é"], dtype: .bf16, context: 16)
        manifest.countSkipped("invalid_utf8", by: 2)
        manifest.failedUnits = []
        let shards = (0..<shardCount).map { index in
            ShardManifest.Shard(
                file: "unit-\(index).shard", hook: manifest.hooks[index % manifest.hooks.count], unit: UInt64(index) << 33, rows: index * 1000 + 7, bytes: Int.max - index,
                crc32c: "0badf00d")
        }
        var whole = manifest
        whole.shards = shards
        whole.rows = shards.reduce(0) { $0 + $1.rows }
        var head = whole
        head.shards = []
        try head.write(toDirectory: folder, streaming: shards)
        let streamed = try readFile(folder + "/manifest.json")
        #expect(String(decoding: streamed, as: UTF8.self) == String(decoding: try whole.encoded(), as: UTF8.self))
        #expect(try ShardManifest.read(folder) == whole)
    }

    @Test func shardFileNamesSortByUnit() {
        #expect(ShardManifest.shardFileName(unit: 17, hook: "blocks.3.hook_resid_post") == "unit-00000017.blocks.3.hook_resid_post.shard")
        #expect(ShardManifest.shardFileName(unit: 3, hook: "a/b") < ShardManifest.shardFileName(unit: 12, hook: "a/b"))
        #expect(!ShardManifest.shardFileName(unit: 3, hook: "a/b").contains("/"))
    }

    @Test func verifyComparesTheManifestWithTheFiles() throws {
        let folder = try temporaryFolder("manifest-verify")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var manifest = try sampleManifest(folder)
        try manifest.write(toDirectory: folder)
        // A shard replaced by another valid shard: caught by size/CRC/rows.
        try writeShard(makeRows(50, width: 7, seed: 99), to: folder + "/" + manifest.shards[1].file, .bf16, blockRows: 32, unit: 1)
        // A stray shard and a missing one.
        try writeShard(makeRows(5, width: 7, seed: 98), to: folder + "/stray.shard", .bf16, blockRows: 32)
        try FileManager.default.removeItem(atPath: folder + "/" + manifest.shards[2].file)
        let problems = ShardDirectory.verify(folder).map(\.description)
        #expect(problems.contains { $0.contains(manifest.shards[1].file) && $0.contains("rows (manifest.json): expected 101, found 50") }, "\(problems)")
        #expect(problems.contains { $0.contains(manifest.shards[1].file) && $0.contains("CRC-32C of the whole file") })
        #expect(problems.contains { $0.contains("stray.shard") && $0.contains("not listed") })
        #expect(problems.contains { $0.contains(manifest.shards[2].file) && $0.contains("no readable file") })

        // Hostile statistics are refused, not trusted.
        var hostile = manifest
        hostile.statistics["blocks.3.hook_resid_post"]?.mean = []
        try hostile.write(toDirectory: folder)
        #expect(throws: ShardError.self) { try ShardManifest.read(folder) }

        // An inconsistent manifest is refused with a sentence.
        manifest.rows += 1
        try manifest.write(toDirectory: folder)
        #expect(throws: ShardError.self) { try ShardManifest.read(folder) }
        #expect(ShardDirectory.verify(folder).first?.description.contains("rows: expected 301, the sum over shards, found 302") == true)
    }
}
