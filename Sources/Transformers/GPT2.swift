import CKernels

/// GPT-2: learned positions, pre-LayerNorm blocks, causal attention, tanh GELU. Conv1D
/// weights are stored [in, out]; the output embedding is tied to the input one.
///
/// Per block, with x the residual stream [rows, d]:
///   a = CausalAttention(LN₁(x)) W_proj + b     → hook_attn_out
///   x = x + a
///   h = GELU(LN₂(x) W_fc + b_fc)               → mlp.hook_post [rows, 4d]
///   f = h W_proj2 + b                          → hook_mlp_out
///   x = x + f                                  → hook_resid_post
/// and after the last block, the final hidden state LN_f(x) and logits LN_f(x) W_teᵀ.
final class GPT2Model: ForwardModel {
    private struct Block {
        let norm1: LayerNorm, qkv: Linear, projection: Linear
        let norm2: LayerNorm, up: Linear, down: Linear
    }

    let config: GPT2Config
    private let tokenEmbeddings, positionEmbeddings: FloatBuffer
    private let blocks: [Block]
    private let finalNorm: LayerNorm
    private let attention: Attention
    /// The LM head: the token embeddings, tied.
    let head: Linear?

    init(config: GPT2Config, weights: WeightStore) throws {
        self.config = config
        let d = config.hidden, m = config.intermediate, eps = config.layerNormEpsilon
        // GPT2LMHeadModel nests the model under "transformer.".
        let p = weights.prefix(probing: "wte.weight", candidates: ["", "transformer."])
        tokenEmbeddings = try weights.take(p + "wte.weight", [config.vocabularySize, d])
        positionEmbeddings = try weights.take(p + "wpe.weight", [config.maxPositions, d])
        blocks = try (0..<config.layers).map { layer in
            let b = "\(p)h.\(layer)."
            return Block(
                norm1: try weights.layerNorm(b + "ln_1", width: d, epsilon: eps),
                qkv: try weights.conv1D(b + "attn.c_attn", inputs: d, outputs: 3 * d),
                projection: try weights.conv1D(b + "attn.c_proj", inputs: d, outputs: d),
                norm2: try weights.layerNorm(b + "ln_2", width: d, epsilon: eps),
                up: try weights.conv1D(b + "mlp.c_fc", inputs: d, outputs: m),
                down: try weights.conv1D(b + "mlp.c_proj", inputs: m, outputs: d))
        }
        finalNorm = try weights.layerNorm(p + "ln_f", width: d, epsilon: eps)
        head = Linear(weight: tokenEmbeddings, bias: nil, inputs: d, outputs: config.vocabularySize, inputMajor: false)
        attention = Attention(heads: config.heads, kvHeads: config.heads, headDim: d / config.heads, causal: true)
        // Causal-mask buffers of old checkpoints and the tied LM head.
        weights.ignore { name in name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") || name == "lm_head.weight" }
    }

    func forward(_ batch: TokenBatch, capture: inout Capture, workspace: Workspace, threads: Int) {
        let rows = batch.rows, d = config.hidden, m = config.intermediate
        let x = workspace.slot(0, count: rows * d)
        let normed = workspace.slot(1, count: rows * d)
        let qkv = workspace.slot(2, count: rows * 3 * d)
        let context = workspace.slot(3, count: rows * d)
        let sublayer = workspace.slot(4, count: rows * d)
        let hidden = workspace.slot(5, count: rows * m)
        let scratch = workspace.slot(6, count: threads * attention.scratchPerThread(longest: batch.longest))

        gatherRows(tokenEmbeddings, width: d, indices: batch.tokens, into: x)
        addRows(positionEmbeddings, width: d, indices: batch.positions, into: x)

        for (layer, block) in blocks.enumerated() {
            func hook(_ site: HookPoint.Site, _ source: UnsafeMutablePointer<Float>, _ width: Int) -> Bool {
                capture.record(HookPoint(layer: layer, site: site), source, width: width)
            }
            func hook(_ site: HookPoint.Site, _ sublayer: UnsafeMutablePointer<Float>, addedTo residual: UnsafeMutablePointer<Float>) -> Bool {
                capture.record(HookPoint(layer: layer, site: site), sublayer, width: d, addedTo: residual)
            }
            if hook(.residPre, x, d) { return }

            block.norm1.apply(x, into: normed, rows: rows, width: d, threads: threads)
            block.qkv.apply(normed, rows: rows, ldx: d, into: qkv, ldy: 3 * d, threads: threads)
            attention.apply(qkv: qkv, batch: batch, scratch: scratch, into: context, threads: threads)
            block.projection.apply(context, rows: rows, ldx: d, into: sublayer, ldy: d, threads: threads)
            Elementwise.add(x, sublayer, count: rows * d, threads: threads)
            if hook(.attnOut, sublayer, addedTo: x) { return }

            block.norm2.apply(x, into: normed, rows: rows, width: d, threads: threads)
            block.up.apply(
                normed, rows: rows, ldx: d, into: hidden, ldy: m, threads: threads,
                activation: config.activation == .geluTanh ? .geluTanh : .geluErf)
            if hook(.mlpPost, hidden, m) { return }
            block.down.apply(hidden, rows: rows, ldx: m, into: sublayer, ldy: d, threads: threads)
            Elementwise.add(x, sublayer, count: rows * d, threads: threads)
            if hook(.mlpOut, sublayer, addedTo: x) { return }
            if hook(.residPost, x, d) { return }
        }
        finalNorm.apply(x, into: normed, rows: rows, width: d, threads: threads)
        capture.recordFinal(normed, width: d)
    }
}
