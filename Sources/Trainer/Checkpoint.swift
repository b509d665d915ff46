import Foundation
import Platform
import SafeTensors

/// Trainer state besides tensors: where the run stands.
public struct TrainerState: Codable, Equatable, Sendable {
    public var step: Int
    public var tokens: Int
    /// SplitMix64 state of the shuffle buffer's draws.
    public var random: UInt64
    /// Next row the data source will read.
    public var position: DataPosition
    public var bufferRows: Int
    public var thresholdStarted: Bool

    enum CodingKeys: String, CodingKey {
        case step, tokens, random, position
        case bufferRows = "buffer_rows"
        case thresholdStarted = "threshold_started"
    }
}

/// The on-disk checkpoint, one folder per save under `OUT/checkpoints/`:
/// - `sae.safetensors`: `W_enc [m, d]`, `b_enc [m]`, `W_dec [m, d]`, `b_dec [d]` (normalised units);
/// - `config.json`: the dictionary (shape, architecture, hook, model, normalisation scale,
///   threshold) and the training hyperparameters;
/// - `state.safetensors`: Adam moments, tokens since each latent fired, shuffle-buffer rows;
/// - `state.json`: step, tokens, RNG state and data position.
///
/// A save writes `.tmp-step-N`, renames it to `step-N` (each file fsynced), then points the
/// `latest` symlink at it with an atomic rename, so a reader never sees half a checkpoint.
public enum Checkpoint {
    public static let format = "actcluster-sae"

    struct ConfigFile: Codable {
        var format = Checkpoint.format
        var version = 1
        var dictionary: DictionaryConfig
        var training: TrainingConfig
    }

    static let momentNames = ["W_enc", "b_enc", "W_dec", "b_dec"].flatMap { ["adam_m.\($0)", "adam_v.\($0)"] }

    /// Writes a checkpoint under `directory/checkpoints/` and returns its folder.
    @discardableResult
    public static func save(
        trainer: SAETrainer, state: TrainerState, buffer: [Float], to directory: String, keep: Int = 2
    ) throws -> String {
        let root = directory + "/checkpoints"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let name = String(format: "step-%08d", state.step)
        let temporary = root + "/.tmp-" + name
        let final = root + "/" + name
        try? FileManager.default.removeItem(atPath: temporary)
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        try writeWeights(trainer.model, to: temporary + "/sae.safetensors")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let config = ConfigFile(dictionary: trainer.model.config, training: trainer.training)
        try AtomicFile.write(Array(try encoder.encode(config)) + [10], to: temporary + "/config.json")
        let d = trainer.model.width
        var tensors = zip(momentNames, trainer.moments).map { name, storage in
            OutputTensor(name: name, shape: [storage.count], floats: storage.array)
        }
        tensors.append(OutputTensor(name: "tokens_since_fired", shape: [trainer.model.latents], int64s: trainer.tokensSinceFired.array))
        tensors.append(OutputTensor(name: "buffer", shape: [buffer.count / d, d], floats: buffer))
        try SafeTensorsWriter.write(tensors, to: temporary + "/state.safetensors")
        try AtomicFile.write(Array(try encoder.encode(state)) + [10], to: temporary + "/state.json")
        try? FileManager.default.removeItem(atPath: final)
        guard rename(temporary, final) == 0 else { throw FileError(operation: "rename checkpoint", path: final, code: errno) }
        try AtomicFile.syncDirectory(containing: final)
        // Point `latest` at it: a new symlink under a temporary name renamed over the old one.
        let link = root + "/.latest-\(getpid())"
        unlink(link)
        guard symlink(name, link) == 0 else { throw FileError(operation: "symlink", path: link, code: errno) }
        guard rename(link, root + "/latest") == 0 else { throw FileError(operation: "rename", path: root + "/latest", code: errno) }
        try AtomicFile.syncDirectory(containing: root + "/latest")
        // Keep the newest `keep` checkpoints.
        let saved = (try FileManager.default.contentsOfDirectory(atPath: root)).filter { $0.hasPrefix("step-") }.sorted()
        for old in saved.dropLast(keep) where old != name { try? FileManager.default.removeItem(atPath: root + "/" + old) }
        return final
    }

    /// Writes the dictionary's weights (normalised units, our layout).
    public static func writeWeights(_ model: SparseAutoencoder, to path: String) throws {
        let m = model.latents, d = model.width
        try SafeTensorsWriter.write(
            [
                OutputTensor(name: "W_enc", shape: [m, d], floats: model.encoderWeight.array),
                OutputTensor(name: "b_enc", shape: [m], floats: model.encoderBias.array),
                OutputTensor(name: "W_dec", shape: [m, d], floats: model.decoderWeight.array),
                OutputTensor(name: "b_dec", shape: [d], floats: model.decoderBias.array),
            ], metadata: ["format": format], to: path)
    }

    /// The checkpoint folder a path names: a checkpoint itself, a `checkpoints/` folder, or a
    /// run's `--out` folder (the latest checkpoint in either case).
    public static func resolve(_ path: String) throws -> String {
        let manager = FileManager.default
        for candidate in [path, path + "/latest", path + "/checkpoints/latest"] where manager.fileExists(atPath: candidate + "/config.json") {
            return candidate
        }
        throw TrainerError("\(path) holds no checkpoint (expected config.json and sae.safetensors, or checkpoints/latest)")
    }

    /// The dictionary and training configuration of a checkpoint.
    public static func loadModel(_ path: String) throws -> (SparseAutoencoder, TrainingConfig) {
        let folder = try resolve(path)
        let config: ConfigFile
        do {
            config = try JSONDecoder().decode(ConfigFile.self, from: Data(try readFile(folder + "/config.json")))
        } catch {
            throw TrainerError("\(folder)/config.json is not an actcluster checkpoint config: \(error)")
        }
        guard config.format == format, config.version == 1 else {
            throw TrainerError("\(folder)/config.json has format \(config.format) version \(config.version), expected \(format) version 1")
        }
        let model = SparseAutoencoder(config: config.dictionary)
        let weights = try SafeTensorsFile(path: folder + "/sae.safetensors")
        let m = model.latents, d = model.width
        for (name, storage, shape) in [
            ("W_enc", model.encoderWeight, [m, d]), ("b_enc", model.encoderBias, [m]), ("W_dec", model.decoderWeight, [m, d]),
            ("b_dec", model.decoderBias, [d]),
        ] {
            let info = try weights.info(name)
            guard info.shape == shape else {
                throw TrainerError("\(folder)/sae.safetensors: \(name) has shape \(info.shape), expected \(shape) from config.json")
            }
            storage.copy(from: try weights.floats(name))
        }
        return (model, config.training)
    }

    /// A trainer restored to the saved step, with its state and shuffle-buffer rows.
    public static func loadTrainer(_ path: String, threads: Int) throws -> (SAETrainer, TrainerState, [Float]) {
        let folder = try resolve(path)
        let (model, training) = try loadModel(folder)
        let trainer = SAETrainer(model: model, training: training, threads: threads)
        let state: TrainerState
        do {
            state = try JSONDecoder().decode(TrainerState.self, from: Data(try readFile(folder + "/state.json")))
        } catch {
            throw TrainerError("\(folder)/state.json is unreadable: \(error)")
        }
        let tensors = try SafeTensorsFile(path: folder + "/state.safetensors")
        for (name, storage) in zip(momentNames, trainer.moments) {
            let values = try tensors.floats(name)
            guard values.count == storage.count else { throw TrainerError("\(folder)/state.safetensors: \(name) has \(values.count) values, expected \(storage.count)") }
            storage.copy(from: values)
        }
        let fired = try tensors.integers("tokens_since_fired")
        guard fired.count == model.latents else { throw TrainerError("\(folder)/state.safetensors: tokens_since_fired has \(fired.count) values") }
        trainer.tokensSinceFired.copy(from: fired)
        trainer.step = state.step
        trainer.tokens = state.tokens
        trainer.thresholdStarted = state.thresholdStarted
        return (trainer, state, try tensors.floats("buffer"))
    }
}
