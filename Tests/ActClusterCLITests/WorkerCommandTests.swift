import ClusterProtocol
import Foundation
import Shards
import Testing
import ZeroMQ

/// `actcluster worker` as a real process against a scripted coordinator ROUTER.
@Suite struct WorkerCommandTests {
    private final class Coordinator {
        let context: ZeroMQContext
        let router: ZeroMQSocket
        let endpoint: String
        var peer: Envelope?

        init(curveSecretKey: String? = nil) throws {
            context = try ZeroMQContext()
            router = try context.socket(.router)
            try router.configure(linger: .zero)
            if let curveSecretKey { try router.makeCurveServer(secretKey: curveSecretKey) }
            endpoint = try router.bind("tcp://127.0.0.1:0")
        }

        /// The next message, HEARTBEAT included; nil after `timeout`.
        func receiveAny(timeout: Duration = .seconds(30)) throws -> WorkerMessage? {
            guard let frames = try router.receiveMultipart(timeout: timeout) else { return nil }
            let (envelope, body) = try Envelope.split(frames.map(\.bytes))
            peer = envelope
            return try WorkerMessage.decode(frames: body)
        }

        /// The next message that is not a HEARTBEAT.
        func receive() throws -> WorkerMessage {
            while true {
                let message = try #require(try receiveAny(), "the worker sent nothing")
                if message.command != .heartbeat { return message }
            }
        }

        func send(_ message: CoordinatorMessage) throws {
            try router.send(multipart: try #require(peer).wrap(message.encode()))
        }
    }

    private func start(_ arguments: [String]) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try actclusterBinary())
        process.arguments = arguments
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return (process, err)
    }

    @Test func helpTeachesTheOptionsAndTheSignals() throws {
        let run = try runActcluster(["worker", "--help"])
        #expect(run.status == 0)
        for text in ["--connect <endpoint>", "--curve-server-key <file>", "--curve-key <prefix>", "--stream-policy", "SIGINT or SIGTERM", "Example:"] {
            #expect(run.stdout.contains(text), "help lacks \(text)")
        }
        #expect(try runActcluster(["--help"]).stdout.contains("worker"))
    }

    @Test func unusableOptionsAreRejectedWithASentence() throws {
        let endpoint = try runActcluster(["worker", "--connect", "coordinator:5555"])
        #expect(endpoint.status != 0 && endpoint.stderr.contains("--connect needs a ZeroMQ endpoint such as tcp://coordinator:5555"))
        let keys = try runActcluster(["worker", "--connect", "tcp://127.0.0.1:1", "--curve-key", "keys/w1"])
        #expect(keys.status != 0 && keys.stderr.contains("--curve-key needs --curve-server-key"))
        let threads = try runActcluster(["worker", "--connect", "tcp://127.0.0.1:1", "--threads", "0"])
        #expect(threads.status != 0 && threads.stderr.contains("--threads must be 1 … 4096"))
        let missing = try runActcluster(["worker", "--connect", "tcp://127.0.0.1:1", "--curve-server-key", "/nonexistent/cluster.pub"])
        #expect(missing.status == 1 && missing.stderr.contains("cannot read the key file /nonexistent/cluster.pub"))
    }

    @Test func keysFromKeygenMakeAnEncryptedWorkerAndAMismatchedPairIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for prefix in ["cluster", "w1", "w2"] {
            #expect(try runActcluster(["keygen", "--out", directory + "/" + prefix]).status == 0)
        }
        let secret = String(decoding: try Data(contentsOf: URL(fileURLWithPath: directory + "/cluster.key")), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let coordinator = try Coordinator(curveSecretKey: secret)
        let (process, _) = try start([
            "worker", "--connect", coordinator.endpoint, "--name", "w1", "--curve-server-key", directory + "/cluster.pub", "--curve-key",
            directory + "/w1",
        ])
        guard case .ready(let ready) = try coordinator.receive() else { Issue.record("expected READY over CURVE"); return }
        #expect(ready.worker == "w1")
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)

        // w1's secret key with w2's public key: refused before connecting.
        try FileManager.default.removeItem(atPath: directory + "/w1.pub")
        try FileManager.default.copyItem(atPath: directory + "/w2.pub", toPath: directory + "/w1.pub")
        let mismatched = try runActcluster([
            "worker", "--connect", coordinator.endpoint, "--curve-server-key", directory + "/cluster.pub", "--curve-key", directory + "/w1",
        ])
        #expect(mismatched.status == 1 && mismatched.stderr.contains("w1.pub is not the public key of"), "\(mismatched.stderr)")
    }

    @Test func sigtermStopsAnIdleWorkerWithStatusZero() throws {
        let coordinator = try Coordinator()
        let (process, err) = try start(["worker", "--connect", coordinator.endpoint, "--name", "w-signal"])
        guard case .ready(let ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        #expect(ready.worker == "w-signal")
        process.terminate()
        process.waitUntilExit()
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(log)")
        #expect(log.contains("event=worker_started") && log.contains("event=worker_stopped"))
    }

    /// SIGTERM while a unit is in hand: the worker finishes it and reports DONE (not FAILED),
    /// and after the ACK exits 0 without asking for more.
    @Test func sigtermFinishesTheUnitInHandThenExitsZero() throws {
        let model = fixtures.appendingPathComponent("tiny-bert").path
        let digest = SHA256.hash(Array(try Data(contentsOf: URL(fileURLWithPath: model + "/config.json"))))
        let coordinator = try Coordinator()
        let (process, err) = try start(["worker", "--connect", coordinator.endpoint, "--name", "w-term"])
        guard case .ready = try coordinator.receive() else { Issue.record("expected READY"); return }
        let settings = UnitSettings(
            hooks: ["blocks.0.hook_resid_post"], context: 16, model: ModelReference(path: model, name: "tiny-bert", configSHA256: digest),
            outputDirectory: try scratchDirectory())
        let text = "the worker was told to stop while this line was in hand"
        let bytes = Int64(text.utf8.count)
        let plan = UnitPlan(unit: 1, fileIndex: 0, byteRange: 0..<(bytes + 1), firstDocumentID: 0, firstLine: 1, lineCount: 1, textBytes: Int(bytes))
        try coordinator.send(
            .assign(
                Assignment(
                    run: 9, lease: 3, attempt: 1, settings: settings, file: "c.txt", plan: plan, lines: [UnitLine(rawBytes: bytes + 1, content: .success(text))])))
        // A worker heartbeats its lease as soon as the unit starts: then it holds the unit.
        var report: WorkerMessage?
        while report == nil {
            switch try #require(try coordinator.receiveAny(), "the worker sent nothing") {
            case .heartbeat(let heartbeat) where heartbeat.lease == 3:
                process.terminate()
                report = try coordinator.receive()
            case .heartbeat: continue
            case let other: report = other
            }
        }
        guard case .done(let done) = report else { Issue.record("expected DONE after SIGTERM, got \(String(describing: report))"); return }
        #expect(done.lease == 3 && done.rows > 0)
        try coordinator.send(.ack(Acknowledgement(unit: 1, lease: 3, outcome: .accepted)))
        process.waitUntilExit()
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(log)")
        #expect(log.contains("event=stop_requested") && log.contains("event=worker_stopped"), "\(log)")
        while let message = try coordinator.receiveAny(timeout: .milliseconds(200)) {
            #expect(message.command == .heartbeat, "a stopping worker sent \(message.command)")
        }
    }

    @Test func aModelOfAnotherDigestIsReleasedAndTheWorkerExitsWithBothDigests() throws {
        let model = fixtures.appendingPathComponent("tiny-bert").path
        let actual = SHA256.hash(Array(try Data(contentsOf: URL(fileURLWithPath: model + "/config.json"))))
        let expected = [UInt8](repeating: 0x5A, count: 32)
        let coordinator = try Coordinator()
        let (process, err) = try start(["worker", "--connect", coordinator.endpoint])
        guard case .ready = try coordinator.receive() else { Issue.record("expected READY"); return }
        let settings = UnitSettings(
            hooks: ["blocks.0.hook_resid_post"], model: ModelReference(path: model, name: "tiny-bert", configSHA256: expected),
            outputDirectory: FileManager.default.temporaryDirectory.path)
        let plan = UnitPlan(unit: 1, fileIndex: 0, byteRange: 0..<6, firstDocumentID: 0, firstLine: 1, lineCount: 1, textBytes: 5)
        try coordinator.send(
            .assign(
                Assignment(
                    run: 9, lease: 3, attempt: 1, settings: settings, file: "c.txt", plan: plan,
                    lines: [UnitLine(rawBytes: 6, content: .success("hello"))])))
        guard case .failed(let failed) = try coordinator.receive() else { Issue.record("expected FAILED"); return }
        #expect(failed.disposition == .released && failed.lease == 3)
        try coordinator.send(.ack(Acknowledgement(unit: 1, lease: 3, outcome: .accepted)))
        process.waitUntilExit()
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 1)
        let errorLine = log.split(separator: "\n").first { $0.hasPrefix("Error: ") }.map(String.init) ?? ""
        #expect(errorLine.contains(SHA256.hex(expected)) && errorLine.contains(SHA256.hex(actual)), "\(log)")
    }
}
