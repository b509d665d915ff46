import ArgumentParser
import Foundation
import Testing

@testable import ActClusterCLI

/// `train`, `eval` and `export-sae` reject impossible combinations with a sentence.
/// The sentence a command's parse or `validate()` gives for `arguments`, or nil when they pass.
func validationMessage<Command: ParsableCommand>(_ command: Command.Type, _ arguments: [String]) -> String? {
    do {
        _ = try command.parse(arguments)
        return nil
    } catch {
        return command.message(for: error)
    }
}

@Suite struct TrainCommandTests {
    func message(_ arguments: [String]) -> String? { validationMessage(TrainCommand.self, arguments) }

    @Test func validateRejectsImpossibleCombinations() {
        let base = ["--shards", "s", "--out", "o"]
        #expect(message(base) == nil)
        #expect(message(base + ["--expansion", "8", "--latents", "100"])?.contains("not both") == true)
        #expect(message(base + ["--latents", "16", "--k", "32"])?.contains("cannot exceed") == true)
        #expect(message(base + ["--batch-tokens", "4096", "--tokens", "100"])?.contains("at least one batch") == true)
        #expect(message(base + ["--buffer-tokens", "10"])?.contains("--buffer-tokens") == true)
        #expect(message(base + ["--arch", "jumprelu"]) != nil)
        #expect(message(base + ["--arch", "relu", "--k", "0"]) == nil)
    }

    @Test func liveTrainerValidates() {
        func message(_ arguments: [String]) -> String? { validationMessage(TrainerCommand.self, arguments) }
        let base = ["--bind", "tcp://127.0.0.1:0", "--out", "o"]
        #expect(message(base + ["--hook", "blocks.0.hook_resid_post"]) == nil)
        #expect(message(base)?.contains("give --hook") == true)
        #expect(message(base + ["--hook", "h", "--idle-timeout", "-1"])?.contains("--idle-timeout") == true)
        #expect(message(base + ["--hook", "h", "--queue-tokens", "0"])?.contains("--queue-tokens") == true)
        #expect(message(base + ["--hook", "h", "--latents", "16", "--k", "32"])?.contains("cannot exceed") == true)
    }

    @Test func evalAndBenchValidate() {
        #expect(throws: (any Error).self) { try EvalCommand.parse(["--sae", "x", "--shards", "y", "--batch-tokens", "0"]) }
        #expect(throws: (any Error).self) { try BenchTrainCommand.parse(["--latents", "16", "--k", "32"]) }
        #expect(throws: (any Error).self) { try ExportSAECommand.parse(["ckpt", "--format", "sparsify", "--out", "o"]) }
    }
}
