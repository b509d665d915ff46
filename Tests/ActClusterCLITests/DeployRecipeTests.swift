import Foundation
import Testing

/// The fleet recipes under deploy/ (shell, YAML, kustomize, systemd units, local-fleet.sh's
/// signals), and every actcluster option they use, checked against the binary built here.
@Suite struct DeployRecipes {
    @Test func recipesPassTheirOfflineChecks() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("deploy/check-recipes.sh").path, try actclusterBinary()]
        process.currentDirectoryURL = root
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "deploy/check-recipes.sh failed:\n\(text)")
        #expect(text.contains("options of"), "the option check did not run:\n\(text)")
    }
}
