import ClusterProtocol
import Foundation
import Shards
import Testing
import ZeroMQ

/// `actcluster trainer` as a process: it prints its endpoint, takes BATCH messages pushed to
/// it, stops after --idle-timeout and leaves a checkpoint.
@Suite struct TrainerCommandEndToEnd {
    @Test func trainsOnPushedBatchesAndStopsWhenIdle() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hook = "blocks.0.hook_resid_post", width = 16
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try actclusterBinary())
        process.arguments = [
            "trainer", "--bind", "tcp://127.0.0.1:0", "--hook", hook, "--out", directory + "/run", "--latents", "64", "--k", "4",
            "--batch-tokens", "128", "--tokens", "100000", "--buffer-tokens", "256", "--idle-timeout", "1", "--threads", "1",
            "--log-every", "2",
        ]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // The first stdout line names the bound endpoint.
        var text = ""
        while !text.contains("\n") {
            let data = out.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        let line = try #require(text.split(separator: "\n").first.map(String.init))
        #expect(line.hasPrefix("trainer listening on tcp://127.0.0.1:"))
        let endpoint = String(line.dropFirst("trainer listening on ".count))

        let context = try ZeroMQContext()
        let push = try context.socket(.push)
        try push.set(.linger, 5000)
        try push.connect(endpoint)
        // Made before sending: making them is slow in a debug build, longer than --idle-timeout.
        let batches = try sampleBatches(hook: hook, width: width)
        for frames in batches { try push.send(multipart: frames) }
        try push.send(multipart: batches[2])  // a duplicate
        try push.send(multipart: [Array("nonsense".utf8)])
        push.close()

        let rest = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let stdout = text + String(decoding: rest, as: UTF8.self)
        #expect(process.terminationStatus == 0, "trainer failed: \(stderr)")
        #expect(stdout.contains("6 accepted, 1 duplicate, 1 rejected"), "\(stdout)")
        #expect(stderr.contains("event=batch_received"))
        #expect(stderr.contains("event=batch_duplicate"))
        #expect(stderr.contains("event=batch_rejected"))
        #expect(stderr.contains("event=idle_timeout"))
        #expect(stderr.contains("event=train_step"))
        #expect(FileManager.default.fileExists(atPath: directory + "/run/checkpoints/latest/sae.safetensors"))
    }
}

/// `count` BATCH messages of 100 bf16 rows each (one unit, sequences 0, 1, …; the last is
/// final), the same on every call.
func sampleBatches(hook: String, width: Int, unit: UInt64 = 3, count: Int = 6) throws -> [[[UInt8]]] {
    var value: Float = 0
    return try (0..<count).map { sequence in
        let n = 100
        let activations = (0..<(n * width)).map { _ in
            value += 0.37
            return sin(value) * 2
        }
        var statistics = RunningStatistics(width: width)
        statistics.add(activations)
        let header = ActivationBatchHeader(
            run: 1, worker: "w", unit: UnitID(unit), lease: LeaseID(1), hook: hook, sequence: sequence, final: sequence == count - 1, dtype: .bf16,
            width: width, rows: n, statistics: HookStatistics(statistics))
        let rows = ShardRows(
            width: width, activations: activations, tokens: [Int32](repeating: 1, count: n), documents: [Int64](repeating: 0, count: n),
            windows: [Int64](repeating: 0, count: n), positions: (0..<n).map(Int32.init))
        return try ActivationBatch(header: header, rows: rows).encode()
    }
}
