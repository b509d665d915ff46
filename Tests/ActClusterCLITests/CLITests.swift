import Foundation
import Testing
import ZeroMQ

@testable import ActClusterCLI

@Suite struct Keygen {
    @Test func writesAValidPairWithASecretOnlyTheOwnerCanRead() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keygen-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let prefix = directory + "/cluster"

        let command = try KeygenCommand.parse(["--out", prefix])
        try command.run()
        let secret = try CurveKeyPair.parseKeyText(try String(contentsOfFile: prefix + ".key", encoding: .utf8), role: "secret")
        let publicKey = try CurveKeyPair.parseKeyText(try String(contentsOfFile: prefix + ".pub", encoding: .utf8), role: "public")
        #expect(try CurveKeyPair.publicKey(forSecretKey: secret) == publicKey)
        let secretMode = try FileManager.default.attributesOfItem(atPath: prefix + ".key")[.posixPermissions] as? Int
        #expect(secretMode == 0o600)

        // A second run must not silently destroy the keys a cluster already uses.
        #expect(throws: (any Error).self) { try KeygenCommand.parse(["--out", prefix]).run() }
        #expect(try String(contentsOfFile: prefix + ".key", encoding: .utf8).contains(secret))
        try KeygenCommand.parse(["--out", prefix, "--force"]).run()
        #expect(try !String(contentsOfFile: prefix + ".key", encoding: .utf8).contains(secret))
    }

    @Test func rejectsAFolderAsPrefix() {
        #expect(throws: (any Error).self) { try KeygenCommand.parse(["--out", "keys/"]) }
        #expect(throws: (any Error).self) { try KeygenCommand.parse([]) }
    }
}

@Suite struct Help {
    @Test func rootHelpListsTheSubcommands() {
        let help = ActCluster.helpMessage(columns: 100)
        #expect(help.contains("USAGE: actcluster <subcommand>"))
        #expect(help.contains("version"))
        #expect(help.contains("keygen"))
    }

    @Test func keygenHelpTeachesUsage() {
        let help = ActCluster.helpMessage(for: KeygenCommand.self, columns: 200)
        #expect(help.contains("USAGE: actcluster keygen --out <prefix> [--force]"))
        #expect(help.contains("--out <prefix>          Path prefix of the two key files."))
        #expect(help.contains("--curve-server-key PREFIX.pub"))
    }
}

@Suite struct BenchListeningCheck {
    /// The bench waits for its coordinator to listen by reading /proc/net/tcp, which a wrong
    /// byte order or field would misread as never.
    @Test func seesATCPListenerComeAndGo() throws {
        let context = try ZeroMQContext()
        let socket = try context.socket(.router)
        let endpoint = try socket.bind("tcp://127.0.0.1:0")
        #expect(isListening(endpoint), "\(endpoint)")
        socket.close()
        // libzmq's I/O thread closes the listener a moment later.
        try waitUntil("the listener on \(endpoint) closes", timeout: .seconds(5)) { !isListening(endpoint) }
        #expect(!isListening(endpoint), "\(endpoint) after close")
        #expect(!isListening("tcp://127.0.0.1:notaport"))
    }

    @Test func seesAnIPCSocketFile() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let endpoint = "ipc://\(directory)/c.sock"
        #expect(!isListening(endpoint))
        let context = try ZeroMQContext()
        let socket = try context.socket(.router)
        defer { socket.close() }
        _ = try socket.bind(endpoint)
        #expect(isListening(endpoint))
    }
}

@Suite struct EndpointOptions {
    /// An endpoint typo stops the command before it starts anything: a coordinator would
    /// otherwise hand a bad --trainer to every worker, and every unit would fail.
    @Test func typosAreRefusedBeforeAnythingStarts() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let out = directory + "/out"
        let collection = ["--corpus", directory + "/c.jsonl", "--format", "jsonl", "--model", directory, "--hook", "blocks.0.hook_resid_post", "--out", out]
        let cases: [([String], String)] = [
            (["coordinator"] + collection + ["--bind", "tcp://127.0.0.1:0", "--trainer", "trainer-host:5557"], "--trainer needs a ZeroMQ endpoint"),
            (["coordinator"] + collection + ["--bind", "tcp://*"], "--bind needs a ZeroMQ endpoint such as tcp://*:5555"),
            (["coordinator"] + collection + ["--bind", "tcp://*:5555", "--status-bind", "tcp://*:70000"], "--status-bind needs a ZeroMQ endpoint"),
            (["status", "--connect", "nonsense"], "--connect needs a ZeroMQ endpoint such as tcp://coordinator:5556"),
            (["worker", "--connect", "ipc://"], "--connect needs a ZeroMQ endpoint"),
            (["trainer", "--bind", "5557", "--hook", "blocks.0.hook_resid_post", "--out", out], "--bind needs a ZeroMQ endpoint such as tcp://*:5557"),
        ]
        for (arguments, sentence) in cases {
            let run = try runActcluster(arguments)
            #expect(run.status != 0 && run.stderr.contains(sentence), "\(arguments): \(run.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out), "a refused command wrote its output folder")
        // The forms the README uses pass the check (and fail later, for want of a corpus).
        let accepted = try runActcluster(["coordinator"] + collection + ["--bind", "tcp://*:0", "--trainer", "tcp://[::1]:5557", "--status-bind", "ipc://\(directory)/s"])
        #expect(!accepted.stderr.contains("needs a ZeroMQ endpoint"), "\(accepted.stderr)")
    }
}
