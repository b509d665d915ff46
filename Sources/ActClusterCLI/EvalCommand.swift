import ArgumentParser
import Foundation
import Trainer

/// `actcluster eval`: reconstruction quality of a dictionary on shard files.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Explained variance, FVU, L0 and dead fraction of a trained dictionary on shard files.",
        discussion: """
            EV = 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²), accumulated in float64 over every row read \
            (inference semantics: batchtopk uses its learned threshold). Dead fraction: latents \
            that never fired on these rows. With --json the last line is one JSON object.
            """
    )

    @Option(help: ArgumentHelp("A checkpoint folder, or a run's --out folder.", valueName: "checkpoint"))
    var sae: String

    @Option(help: ArgumentHelp("Folder of shard files.", valueName: "dir"))
    var shards: String

    @Option(help: ArgumentHelp("At most this many rows (default: all of the hook's rows, once).", valueName: "N"))
    var maxTokens: Int?

    @Option(help: "Rows per batch.")
    var batchTokens = 4096

    @Option(help: "Threads.")
    var threads = 2

    @Flag(help: "End with one JSON line of the figures.")
    var json = false

    func validate() throws {
        guard batchTokens > 0, threads > 0 else { throw ValidationError("--batch-tokens and --threads must be positive") }
        if let maxTokens, maxTokens <= 0 { throw ValidationError("--max-tokens must be positive") }
    }

    func run() throws {
        do {
            let (model, _) = try Checkpoint.loadModel(sae)
            let source = try ShardSource(directory: shards, hook: model.config.hook)
            guard source.description.width == model.width else {
                throw CommandFailure("the dictionary has width \(model.width), the shards of \(model.config.hook) have \(source.description.width)")
            }
            let evaluator = Evaluator(model: model, threads: threads)
            var seen = 0
            let limit = min(maxTokens ?? Int.max, try source.totalRows())
            let clock = ContinuousClock(), start = clock.now
            while seen < limit {
                let rows = try source.read(maxRows: min(batchTokens, limit - seen))
                let count = rows.count / model.width
                rows.withUnsafeBufferPointer { _ = evaluator.add(raw: $0, rows: count) }
                seen += count
            }
            let seconds = (clock.now - start) / .seconds(1)
            let a = evaluator.accumulator
            print("dictionary  \(model.config.architecture.rawValue), d=\(model.width), m=\(model.latents), k=\(model.config.k), hook \(model.config.hook)")
            print("rows        \(a.count) (\(Int(Double(a.count) / max(seconds, 1e-9))) rows/s)")
            print(String(format: "EV          %.4f  (FVU %.4f)", a.explainedVariance, a.fractionUnexplained))
            print(String(format: "L0          %.2f", a.l0))
            print(String(format: "dead        %.4f of latents never fired", evaluator.deadFraction))
            if json {
                let figures: [String: Any] = [
                    "explained_variance": a.explainedVariance, "fvu": a.fractionUnexplained, "l0": a.l0,
                    "dead_fraction": evaluator.deadFraction, "rows": a.count, "architecture": model.config.architecture.rawValue,
                    "latents": model.latents, "width": model.width,
                ]
                print(String(decoding: try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys]), as: UTF8.self))
            }
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("\(error)")
        }
    }
}
