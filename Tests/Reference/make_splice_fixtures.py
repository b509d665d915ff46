#!/usr/bin/env python3
"""Downstream-fidelity fixtures: a small fixed SAE spliced into the tiny models with PyTorch
forward hooks, for `actcluster eval --model`.

Writes Tests/Reference/fixtures/splice/CASE/ for each case below (about 80 KB each):

    sae/config.json, sae/sae.safetensors   the SAE as an actcluster checkpoint (our layout:
                                           W_enc [m, d], weights in normalised units, with
                                           normalization_scale s ≠ 1 so the fold is exercised)
    expected.safetensors
        tokens I32 [rows], lengths I32 [n_seq]   the sequences (ragged, concatenated)
        hook.clean F32 [rows, d]                 the activation at the hook, clean pass
        hook.reconstruction F32 [rows, d]        the SAE's reconstruction of it (raw units)
        final.spliced F32 [rows, d]              last_hidden_state with the splice
        causal LMs: loss.clean / loss.spliced / loss.ablated F32 [n_pred]  −log p(next token)
                    at every position but each sequence's last, in order
        encoders:   pooled.clean / pooled.spliced F32 [n_seq, d]  attention-mask-weighted mean
                    pooling (sentence-transformers), cosine F32 [n_seq]
    expected.json   the case, the figures eval reports (ce_loss_* or embedding_cosine), the
                    selection margins and the versions

The SAE (d = 32, m = 64): W_dec rows are ±the rows of a random orthogonal matrix, W_enc is
W_dec plus noise, b_dec the mean of the scaled activations plus noise, s = √d / E‖x‖ over
the clean activations (as the trainer sets it). Reconstruction, in raw units:

    v = W_enc (s·x − b_dec) + b_enc
    z = TopK(ReLU(v)) | v·[v ≥ θ] (batchtopk at inference) | ReLU(v)
    x̂ = (W_dec z + b_dec) / s

Splicing replaces the hook's output at every position (resid_pre: a forward pre-hook on the
block; resid_post: a forward hook on the block; attn_out: a forward hook on attn.c_proj).
Zero ablation replaces it with zeros. CE losses follow SAELens's get_recons_loss: per-token
losses, each mean over every predicted token, and
ce_loss_recovered = (ablated − spliced) / (ablated − clean). BERT runs as one padded batch with
an attention mask; the cosine between pooled embeddings is averaged over sequences.

TopK and threshold selections are discontinuous, so the script checks every selection has a
margin (gap between the k-th and (k+1)-th value, distance to θ) of at least 1e-3 and redraws
the SAE otherwise; float32 differences between implementations cannot flip a choice.

    /work/main/.build/venv-ref/bin/python Tests/Reference/make_splice_fixtures.py [CASE ...]
"""

import hashlib
import json
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertModel, GPT2LMHeadModel, LlamaForCausalLM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
MARGIN = 1e-3
LATENTS = 64

CASES = [
    dict(name="gpt2-resid-pre", model="tiny-gpt2", hook="blocks.1.hook_resid_pre", arch="topk", k=12, seed=2001),
    dict(name="gpt2-attn-out", model="tiny-gpt2", hook="blocks.0.hook_attn_out", arch="relu", k=0, seed=2002),
    dict(name="llama-resid-post", model="tiny-llama", hook="blocks.1.hook_resid_post", arch="batchtopk", k=12, seed=2003),
    dict(name="bert-resid-post", model="tiny-bert", hook="blocks.1.hook_resid_post", arch="topk", k=12, seed=2004),
    dict(name="bert-attn-out", model="tiny-bert", hook="blocks.0.hook_attn_out", arch="topk", k=12, seed=2005),
    dict(name="bert-mlp-out", model="tiny-bert", hook="blocks.1.hook_mlp_out", arch="relu", k=0, seed=2006),
]

FAMILY = {"tiny-gpt2": "gpt2", "tiny-llama": "llama", "tiny-bert": "bert"}


def load(model_name):
    family = FAMILY[model_name]
    cls = {"bert": BertModel, "gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}[family]
    model = cls.from_pretrained(os.path.join(FIXTURES, model_name), attn_implementation="eager", dtype=torch.float32)
    model.eval()
    core = {"bert": lambda m: m, "gpt2": lambda m: m.transformer, "llama": lambda m: m.model}[family](model)
    return family, model, core


def sequences(model_name, config, seed):
    """The reference texts' ids plus two random-id sequences: about 150 rows."""
    meta = json.load(open(os.path.join(FIXTURES, model_name, "reference.json")))
    g = torch.Generator().manual_seed(seed)
    extra = [torch.randint(5, config.vocab_size, (n,), generator=g).tolist() for n in (40, 33)]
    return [list(ids) for ids in meta["ids"]] + extra


def hook_target(family, core, hook):
    """(module, kind): where a hook name lives in the Hugging Face model."""
    _, layer, site = hook.split(".", 2)
    block = (core.encoder.layer if family == "bert" else core.h if family == "gpt2" else core.layers)[int(layer)]
    if site == "hook_resid_pre":
        return block, "pre"
    if site == "hook_resid_post":
        return block, "post"
    if site == "hook_attn_out" and family == "gpt2":
        return block.attn.c_proj, "post"
    # BERT's sublayer outputs before the residual add and LayerNorm (TransformerLens's
    # hook_attn_out / hook_mlp_out): the output projections' dense layers.
    if site == "hook_attn_out" and family == "bert":
        return block.attention.output.dense, "post"
    if site == "hook_mlp_out" and family == "bert":
        return block.output.dense, "post"
    raise ValueError(f"no splice target for {hook} in {family}")


def with_replacement(family, core, hook, replace, run):
    """Runs `run()` with the hook's activation passed through `replace` (None: only recorded)."""
    module, kind = hook_target(family, core, hook)
    seen = {}

    def swap(x):
        seen["x"] = x.detach().clone()
        return x if replace is None else replace(x)

    if kind == "pre":
        def pre(mod, args, kwargs):
            if args:
                return (swap(args[0]),) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = swap(kwargs["hidden_states"])
            return args, kwargs
        handle = module.register_forward_pre_hook(pre, with_kwargs=True)
    else:
        def post(mod, args, out):
            if isinstance(out, tuple):
                return (swap(out[0]),) + tuple(out[1:])
            return swap(out)
        handle = module.register_forward_hook(post)
    try:
        with torch.inference_mode():
            result = run()
    finally:
        handle.remove()
    return result, seen["x"]


def final_norm(family, core):
    return {"gpt2": lambda: core.ln_f, "llama": lambda: core.norm, "bert": lambda: None}[family]()


def causal_pass(family, model, core, ids, hook, replace):
    """One sequence alone: (final hidden [n, d], per-token losses [n − 1], hook activation)."""
    store = {}
    handle = final_norm(family, core).register_forward_hook(lambda m, a, out: store.__setitem__("final", out.detach().clone()))
    try:
        x = torch.tensor([ids])
        out, act = with_replacement(family, core, hook, replace, lambda: model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False))
    finally:
        handle.remove()
    logits = out.logits[0].float()
    losses = torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="none")
    return store["final"][0], losses, act[0]


def bert_pass(model, core, seqs, hook, replace):
    """All sequences as one padded batch: (final hidden per real token [rows, d], pooled [n, d], hook rows)."""
    longest = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), longest, dtype=torch.long)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    out, act = with_replacement("bert", core, hook, replace, lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)))
    hidden = out.last_hidden_state
    # sentence-transformers' mean pooling.
    weights = mask.unsqueeze(-1).float()
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    real = mask.bool()
    return hidden[real], pooled, act[real]


class SAE:
    def __init__(self, arch, d, k, activations, g):
        self.arch, self.k = arch, k
        self.scale = torch.tensor(math.sqrt(d) / activations.norm(dim=1).mean().item(), dtype=torch.float32)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        self.W_dec = torch.cat([q.T, -q.T]).float()
        self.W_enc = (self.W_dec + 0.05 * torch.randn(self.W_dec.shape, generator=g)).float()
        x = activations * self.scale
        self.b_dec = (x.mean(0) + 0.05 * torch.randn(d, generator=g)).float()
        if arch == "relu":
            self.b_enc = (-0.5 + 0.1 * torch.randn(LATENTS, generator=g)).float()
        else:
            self.b_enc = (0.05 * torch.randn(LATENTS, generator=g)).float()
        self.threshold = 0.0
        if arch == "batchtopk":
            # The widest gap near rank rows·k: an average of about k latents per token, with margin.
            values = self.preactivations(activations).flatten().sort(descending=True).values
            rank = activations.shape[0] * k
            gaps = [(values[r] - values[r + 1]).item() for r in range(rank - 20, rank + 20)]
            r = rank - 20 + max(range(len(gaps)), key=gaps.__getitem__)
            self.threshold = ((values[r] + values[r + 1]) / 2).item()

    def preactivations(self, raw):
        return (raw * self.scale - self.b_dec) @ self.W_enc.T + self.b_enc

    def codes(self, raw):
        v = self.preactivations(raw)
        if self.arch == "topk":
            values, indices = torch.relu(v).topk(self.k, dim=1)
            return torch.zeros_like(v).scatter(1, indices, values)
        if self.arch == "batchtopk":
            return torch.where(v >= torch.tensor(self.threshold, dtype=torch.float32), v, torch.zeros_like(v))
        return torch.relu(v)

    def margin(self, raw):
        """Smallest distance of any selection from flipping."""
        v = self.preactivations(raw)
        if self.arch == "topk":
            top = torch.relu(v).topk(self.k + 1, dim=1).values
            gap = top[:, self.k - 1] - top[:, self.k]
            return gap[top[:, self.k - 1] > 0].min().item()
        if self.arch == "batchtopk":
            return (v - self.threshold).abs().min().item()
        return None  # ReLU is continuous: no selection to flip

    def reconstruct(self, raw):
        shape = raw.shape
        flat = raw.reshape(-1, shape[-1]).float()
        return ((self.codes(flat) @ self.W_dec + self.b_dec) / self.scale).reshape(shape).to(raw.dtype)

    def save(self, folder, case, model_name, d):
        os.makedirs(folder, exist_ok=True)
        save_file(
            {"W_enc": self.W_enc.contiguous(), "b_enc": self.b_enc, "W_dec": self.W_dec.contiguous(), "b_dec": self.b_dec},
            os.path.join(folder, "sae.safetensors"), metadata={"format": "actcluster-sae"})
        digest = hashlib.sha256(open(os.path.join(FIXTURES, model_name, "config.json"), "rb").read()).hexdigest()
        config = {
            "format": "actcluster-sae", "version": 1,
            "dictionary": {
                "architecture": self.arch, "width": d, "latents": LATENTS, "k": case["k"], "hook": case["hook"],
                "model_name": model_name, "model_config_sha256": digest,
                "normalization_scale": self.scale.item(), "threshold": self.threshold,
            },
            "training": {
                "lr": 0.0002, "batch_tokens": 64, "tokens": 64, "aux_k_coef": 0.03125, "aux_k": 16, "dead_tokens": 512,
                "l1_coef": 5, "warmup_steps": 1, "decay_fraction": 0.2, "beta1": 0.9, "beta2": 0.999, "epsilon": 6.25e-10,
                "b_dec_init": "zero", "threshold_rate": 0.01, "seed": case["seed"],
            },
        }
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")


def make_case(case):
    family, model, core = load(case["model"])
    d = model.config.hidden_size
    seqs = sequences(case["model"], model.config, case["seed"])
    tensors = {
        "tokens": torch.tensor([t for s in seqs for t in s], dtype=torch.int32),
        "lengths": torch.tensor([len(s) for s in seqs], dtype=torch.int32),
    }
    figures = {}
    if family == "bert":
        _, pooled_clean, act = bert_pass(model, core, seqs, case["hook"], None)
    else:
        runs = [causal_pass(family, model, core, s, case["hook"], None) for s in seqs]
        loss_clean = torch.cat([r[1] for r in runs])
        act = torch.cat([r[2] for r in runs])

    g = torch.Generator().manual_seed(case["seed"])
    for attempt in range(2000):
        sae = SAE(case["arch"], d, case["k"], act, g)
        margin = sae.margin(act)
        if margin is None or margin >= MARGIN:
            break
    else:
        sys.exit(f"{case['name']}: no SAE draw with selection margins ≥ {MARGIN}")
    figures["selection_margin"] = margin
    figures["sae_draws"] = attempt + 1

    if family == "bert":
        final_spliced, pooled_spliced, _ = bert_pass(model, core, seqs, case["hook"], sae.reconstruct)
        cosine = torch.nn.functional.cosine_similarity(pooled_clean, pooled_spliced, dim=1)
        tensors.update({"pooled.clean": pooled_clean, "pooled.spliced": pooled_spliced, "cosine": cosine})
        figures["embedding_cosine"] = cosine.double().mean().item()
    else:
        spliced = [causal_pass(family, model, core, s, case["hook"], sae.reconstruct) for s in seqs]
        ablated = [causal_pass(family, model, core, s, case["hook"], torch.zeros_like) for s in seqs]
        final_spliced = torch.cat([r[0] for r in spliced])
        loss_spliced = torch.cat([r[1] for r in spliced])
        loss_ablated = torch.cat([r[1] for r in ablated])
        tensors.update({"loss.clean": loss_clean, "loss.spliced": loss_spliced, "loss.ablated": loss_ablated})
        clean, spl, abl = (t.double().mean().item() for t in (loss_clean, loss_spliced, loss_ablated))
        # Random models can do better ablated; only a small denominator would make the ratio fragile.
        assert abs(abl - clean) > 0.1, f"{case['name']}: ablation barely changes the loss ({abl} vs {clean}); pick another hook"
        figures.update({
            "ce_loss_clean": clean, "ce_loss_spliced": spl, "ce_loss_ablated": abl,
            "ce_loss_recovered": (abl - spl) / (abl - clean),
        })
    recon = sae.reconstruct(act)
    figures["explained_variance"] = 1 - ((act - recon) ** 2).sum().item() / ((act - act.mean(0)) ** 2).sum().item()
    tensors.update({
        "hook.clean": act, "hook.reconstruction": recon, "final.spliced": final_spliced,
    })
    tensors = {k: v.contiguous() for k, v in tensors.items()}

    folder = os.path.join(FIXTURES, "splice", case["name"])
    sae.save(os.path.join(folder, "sae"), case, case["model"], d)
    save_file(tensors, os.path.join(folder, "expected.safetensors"), metadata={"format": "pt"})
    meta = dict(case)
    meta.update({
        "family": family, "latents": LATENTS, "rows": int(tensors["tokens"].shape[0]),
        "figures": figures,
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sorted(tensors.items())},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "safetensors": safetensors.__version__},
    })
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    print(case["name"], json.dumps(figures))


def main():
    """Every case, or only those named on the command line (the others stay as they are)."""
    torch.set_num_threads(1)
    wanted = set(sys.argv[1:])
    unknown = wanted - {case["name"] for case in CASES}
    if unknown:
        sys.exit(f"unknown case(s) {sorted(unknown)}; cases: {[case['name'] for case in CASES]}")
    for case in CASES:
        if not wanted or case["name"] in wanted:
            make_case(case)


if __name__ == "__main__":
    main()
