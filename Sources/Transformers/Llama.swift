import CKernels
import Foundation

/// Llama and its relatives (Llama 2/3, Mistral, Qwen2, SmolLM): RMSNorm, rotary positions
/// (with llama3 frequency scaling), grouped-query attention and a SwiGLU MLP.
///
/// Per block, with x the residual stream [rows, d]:
///   q, k, v = RMSNorm₁(x) W_q, W_k, W_v       (rotary on q and k)
///   a = CausalAttention(q, k, v) W_o          → hook_attn_out
///   x = x + a
///   h = SiLU(RMSNorm₂(x) W_gate) ⊙ (RMSNorm₂(x) W_up)   → mlp.hook_post [rows, m]
///   f = h W_down                               → hook_mlp_out
///   x = x + f                                  → hook_resid_post
/// and after the last block, the final hidden state RMSNorm(x) and logits RMSNorm(x) W_lmᵀ.
final class LlamaModel: ForwardModel {
    private struct Block {
        let norm1: RMSNorm, qkv: Linear, output: Linear
        let norm2: RMSNorm, gate: Linear, up: Linear, down: Linear
    }

    let config: LlamaConfig
    private let embeddings: FloatBuffer
    private let blocks: [Block]
    private let finalNorm: RMSNorm
    private let attention: Attention
    /// `lm_head` (or the embeddings, when tied); loaded only on request, being vocabulary × d.
    let head: Linear?
    /// Rotary frequencies per pair of dimensions, as transformers computes them in float32.
    let inverseFrequencies: [Float]
    private var cosTable: [Float] = []
    private var sinTable: [Float] = []
    private var tablePositions = 0

    init(config: LlamaConfig, weights: WeightStore, languageModelHead: Bool) throws {
        self.config = config
        let d = config.hidden, m = config.intermediate, eps = config.rmsNormEpsilon
        let qWidth = config.heads * config.headDim, kvWidth = config.kvHeads * config.headDim
        let p = weights.prefix(probing: "embed_tokens.weight", candidates: ["", "model."])
        embeddings = try weights.take(p + "embed_tokens.weight", [config.vocabularySize, d])
        blocks = try (0..<config.layers).map { layer in
            let b = "\(p)layers.\(layer)."
            return Block(
                norm1: RMSNorm(weight: try weights.take(b + "input_layernorm.weight", [d]), epsilon: eps),
                qkv: try weights.linear(
                    ["q_proj", "k_proj", "v_proj"].map { b + "self_attn." + $0 }, inputs: d, outputs: [qWidth, kvWidth, kvWidth],
                    bias: config.qkvBias),
                output: try weights.linear(b + "self_attn.o_proj", inputs: qWidth, outputs: d, bias: config.outputBias),
                norm2: RMSNorm(weight: try weights.take(b + "post_attention_layernorm.weight", [d]), epsilon: eps),
                gate: try weights.linear(b + "mlp.gate_proj", inputs: d, outputs: m, bias: config.mlpBias),
                up: try weights.linear(b + "mlp.up_proj", inputs: d, outputs: m, bias: config.mlpBias),
                down: try weights.linear(b + "mlp.down_proj", inputs: m, outputs: d, bias: config.mlpBias))
        }
        finalNorm = RMSNorm(weight: try weights.take(p + "norm.weight", [d]), epsilon: eps)
        switch (languageModelHead, config.tiedEmbeddings) {
        case (false, _): head = nil
        case (true, true): head = Linear(weight: embeddings, bias: nil, inputs: d, outputs: config.vocabularySize, inputMajor: false)
        case (true, false): head = try weights.linear("lm_head", inputs: d, outputs: config.vocabularySize, bias: false)
        }
        attention = Attention(heads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim, causal: true)
        inverseFrequencies = LlamaModel.inverseFrequencies(config)
        weights.ignore { name in name == "lm_head.weight" || name.hasSuffix("rotary_emb.inv_freq") }
    }

    /// `1 / θ^(2i/dh)`, then llama3 scaling: long wavelengths divided by `factor`, short ones
    /// kept, and a smooth blend in between.
    static func inverseFrequencies(_ config: LlamaConfig) -> [Float] {
        let dim = config.headDim
        let base = Float(config.ropeTheta)
        var frequencies = stride(from: 0, to: dim, by: 2).map { 1 / powf(base, Float($0) / Float(dim)) }
        guard let scaling = config.ropeScaling else { return frequencies }
        let factor = Float(scaling.factor), low = Float(scaling.lowFrequencyFactor), high = Float(scaling.highFrequencyFactor)
        let oldContext = Float(scaling.originalMaxPositions)
        let lowWavelength = oldContext / low, highWavelength = oldContext / high
        frequencies = frequencies.map { frequency in
            let wavelength = 2 * Float.pi / frequency
            if wavelength < highWavelength { return frequency }
            if wavelength > lowWavelength { return frequency / factor }
            let smooth = (oldContext / wavelength - low) / (high - low)
            return (1 - smooth) * frequency / factor + smooth * frequency
        }
        return frequencies
    }

    private func ensureRotaryTables(positions: Int) {
        guard positions > tablePositions else { return }
        let half = config.headDim / 2
        cosTable = [Float](repeating: 0, count: positions * half)
        sinTable = [Float](repeating: 0, count: positions * half)
        for position in 0..<positions {
            for i in 0..<half {
                let angle = Float(position) * inverseFrequencies[i]
                cosTable[position * half + i] = Float(cos(Double(angle)))
                sinTable[position * half + i] = Float(sin(Double(angle)))
            }
        }
        tablePositions = positions
    }

    func forward(_ batch: TokenBatch, capture: inout Capture, workspace: Workspace, threads: Int) {
        let rows = batch.rows, d = config.hidden, m = config.intermediate
        let fused = attention.fusedWidth, qWidth = attention.queryWidth
        let x = workspace.slot(0, count: rows * d)
        let normed = workspace.slot(1, count: rows * d)
        let qkv = workspace.slot(2, count: rows * fused)
        let context = workspace.slot(3, count: rows * qWidth)
        let sublayer = workspace.slot(4, count: rows * d)
        let gate = workspace.slot(5, count: rows * m)
        let up = workspace.slot(6, count: rows * m)
        let scratch = workspace.slot(7, count: threads * attention.scratchPerThread(longest: batch.longest))
        ensureRotaryTables(positions: batch.longest)

        gatherRows(embeddings, width: d, indices: batch.tokens, into: x)

        for (layer, block) in blocks.enumerated() {
            func hook(_ site: HookPoint.Site, _ source: UnsafeMutablePointer<Float>, _ width: Int) -> Bool {
                capture.record(HookPoint(layer: layer, site: site), source, width: width)
            }
            if hook(.residPre, x, d) { return }

            block.norm1.apply(x, into: normed, rows: rows, width: d, threads: threads)
            block.qkv.apply(normed, rows: rows, ldx: d, into: qkv, ldy: fused, threads: threads)
            batch.positions.withUnsafeBufferPointer { positions in
                ak_rope(qkv, rows, config.heads, config.headDim, fused, positions.baseAddress, cosTable, sinTable)
                ak_rope(qkv + qWidth, rows, config.kvHeads, config.headDim, fused, positions.baseAddress, cosTable, sinTable)
            }
            attention.apply(qkv: qkv, batch: batch, scratch: scratch, into: context, threads: threads)
            block.output.apply(context, rows: rows, ldx: qWidth, into: sublayer, ldy: d, threads: threads)
            if hook(.attnOut, sublayer, d) { return }
            Elementwise.add(x, sublayer, count: rows * d, threads: threads)

            block.norm2.apply(x, into: normed, rows: rows, width: d, threads: threads)
            block.gate.apply(normed, rows: rows, ldx: d, into: gate, ldy: m, threads: threads)
            block.up.apply(normed, rows: rows, ldx: d, into: up, ldy: m, threads: threads)
            Elementwise.siluMultiply(gate, up, count: rows * m, threads: threads)
            if hook(.mlpPost, gate, m) { return }
            block.down.apply(gate, rows: rows, ldx: m, into: sublayer, ldy: d, threads: threads)
            if hook(.mlpOut, sublayer, d) { return }
            Elementwise.add(x, sublayer, count: rows * d, threads: threads)
            if hook(.residPost, x, d) { return }
        }
        finalNorm.apply(x, into: normed, rows: rows, width: d, threads: threads)
        capture.recordFinal(normed, width: d)
    }
}
