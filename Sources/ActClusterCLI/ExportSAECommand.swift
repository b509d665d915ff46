import ArgumentParser
import Foundation
import Platform
import SafeTensors
import Trainer

/// `actcluster export-sae`: a checkpoint in the layout SAELens loads with `SAE.load_from_disk`.
struct ExportSAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-sae",
        abstract: "Write a trained dictionary as SAELens loads it (cfg.json + sae_weights.safetensors).",
        discussion: """
            Weights are float32 in raw activation units: the normalisation scale s is folded \
            in (b_dec/s, b_enc/s, threshold/s; W_enc and W_dec unchanged, so decoder rows keep \
            unit norm and latents are in raw units), with apply_b_dec_to_input true and \
            normalize_activations "none". W_enc is written [d, m] as SAELens expects. topk \
            exports as "topk"; batchtopk as "jumprelu" with its learned threshold in every \
            latent (SAELens saves BatchTopK SAEs as JumpReLU for inference); relu as "standard".
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case saelens }

    @Argument(help: ArgumentHelp("A checkpoint folder, or a run's --out folder (its latest checkpoint).", valueName: "checkpoint"))
    var checkpoint: String

    @Option(help: "Output layout: saelens.")
    var format: Format = .saelens

    @Option(help: ArgumentHelp("Folder to write (created if missing).", valueName: "dir"))
    var out: String

    func run() throws {
        do {
            let (model, _) = try Checkpoint.loadModel(checkpoint)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try Self.writeSAELens(model, to: out)
            print("wrote \(out)/cfg.json and \(out)/sae_weights.safetensors (\(Self.saelensArchitecture(model.config.architecture)), d_in \(model.width), d_sae \(model.latents))")
        } catch {
            throw CommandFailure("\(error)")
        }
    }

    static func saelensArchitecture(_ architecture: Architecture) -> String {
        switch architecture {
        case .topk: "topk"
        case .batchtopk: "jumprelu"
        case .relu: "standard"
        }
    }

    static func writeSAELens(_ model: SparseAutoencoder, to directory: String) throws {
        let m = model.latents, d = model.width, config = model.config
        let s = config.normalizationScale
        var encoder = [Float](repeating: 0, count: d * m)  // [d, m]
        for i in 0..<m { for c in 0..<d { encoder[c * m + i] = model.encoderWeight[i * d + c] } }
        var tensors = [
            OutputTensor(name: "W_enc", shape: [d, m], floats: encoder),
            OutputTensor(name: "b_enc", shape: [m], floats: model.encoderBias.array.map { $0 / s }),
            OutputTensor(name: "W_dec", shape: [m, d], floats: model.decoderWeight.array),
            OutputTensor(name: "b_dec", shape: [d], floats: model.decoderBias.array.map { $0 / s }),
        ]
        if config.architecture == .batchtopk {
            tensors.append(OutputTensor(name: "threshold", shape: [m], floats: [Float](repeating: config.threshold / s, count: m)))
        }
        try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: directory + "/sae_weights.safetensors")
        var cfg: [String: Any] = [
            "architecture": saelensArchitecture(config.architecture), "d_in": d, "d_sae": m, "dtype": "float32", "device": "cpu",
            "apply_b_dec_to_input": true, "normalize_activations": "none", "reshape_activations": "none",
            "metadata": [
                "hook_name": config.hook, "model_name": config.modelName, "exported_by": "actcluster", "hook_head_index": NSNull(),
                "model_class_name": "HookedTransformer", "prepend_bos": true, "context_size": NSNull(), "dataset_path": NSNull(),
                "sae_lens_version": "6.0.0", "sae_lens_training_version": NSNull(), "model_from_pretrained_kwargs": [String: Any](),
            ] as [String: Any],
        ]
        if config.architecture == .topk { cfg["k"] = config.k }
        let data = try JSONSerialization.data(withJSONObject: cfg, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try AtomicFile.write(Array(data) + [10], to: directory + "/cfg.json")
    }
}
