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
