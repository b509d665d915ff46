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
        let deadline = Date().addingTimeInterval(5)
        while isListening(endpoint) && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
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
