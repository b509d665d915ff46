#!/usr/bin/env python3
"""PyTorch reference for `actcluster bench train`: the same TopK SAE, written the way
EleutherAI sparsify writes it (nn.Linear encoder, ReLU then topk, embedding_bag decode,
FVU loss, AuxK on dead latents, decoder rows at unit norm with the parallel gradient
removed, Adam), with the same hyperparameters and schedule as actcluster's trainer:

- inputs scaled so that E‖x‖ = √d (scale from the training rows);
- b_dec starts at the geometric median (Weiszfeld, from the mean) of the first 16384 rows;
- W_enc ~ nn.Linear default, b_enc = 0, W_dec = W_enc with unit rows;
- loss ‖x − x̂‖² / Σ‖x − x̄‖² + α · min(dead/k_aux, 1) · ‖ê − e‖² / Σ‖x − x̄‖², with ê from
  the top k_aux = min(d/2, dead) dead latents (no bias) and e detached;
- Adam(β 0.9, 0.999, eps 6.25e-10), linear warm-up, flat, linear decay over the last
  `--decay-fraction` of steps.

Reads `train` [N, d] and `heldout` [H, d] from a safetensors file, trains on `--tokens` rows
of `train` in order, and prints tokens/s of the training loop and the explained variance on
`heldout` (float64, 1 − E‖x − x̂‖² / (E‖x‖² − ‖Ex‖²)). With --json the last line is JSON.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def geometric_median(points, iterations=50, tolerance=1e-6):
    center = points.mean(0)
    for _ in range(iterations):
        weights = 1 / torch.linalg.vector_norm(points - center, dim=1).clamp_min(1e-12)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        moved = torch.linalg.vector_norm(new - center)
        center = new
        if moved <= tolerance * max(1.0, float(torch.linalg.vector_norm(new))):
            break
    return center


class TopKSAE(torch.nn.Module):
    def __init__(self, d, m, k):
        super().__init__()
        self.k = k
        self.encoder = torch.nn.Linear(d, m)
        self.encoder.bias.data.zero_()
        self.W_dec = torch.nn.Parameter(self.encoder.weight.data.clone())
        self.set_decoder_norm_to_unit_norm()
        self.b_dec = torch.nn.Parameter(torch.zeros(d))

    def encode(self, x):
        pre = F.relu(self.encoder(x - self.b_dec))
        acts, indices = pre.topk(self.k, sorted=False)
        return acts, indices, pre

    def decode(self, acts, indices, bias=True):
        out = F.embedding_bag(indices, self.W_dec, per_sample_weights=acts, mode="sum")
        return out + self.b_dec if bias else out

    def forward(self, x, dead_mask, aux_k, aux_coef):
        acts, indices, pre = self.encode(x)
        out = self.decode(acts, indices)
        e = x - out
        total_variance = (x - x.mean(0)).pow(2).sum()
        fvu = e.pow(2).sum() / total_variance
        aux = x.new_tensor(0.0)
        dead = int(dead_mask.sum())
        if dead > 0 and aux_coef > 0:
            k_aux = min(aux_k, dead)
            scale = min(dead / aux_k, 1.0)
            masked = torch.where(dead_mask[None], pre, -torch.inf)
            aux_acts, aux_indices = masked.topk(k_aux, sorted=False)
            e_hat = self.decode(aux_acts, aux_indices, bias=False)
            aux = scale * (e_hat - e.detach()).pow(2).sum() / total_variance
        return fvu, aux, indices, acts

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self):
        eps = torch.finfo(self.W_dec.dtype).eps
        self.W_dec.data /= torch.norm(self.W_dec.data, dim=1, keepdim=True) + eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self):
        parallel = (self.W_dec.grad * self.W_dec.data).sum(1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec.data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--latents", type=int, default=6144)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--warmup-steps", type=int, required=True)
    parser.add_argument("--decay-fraction", type=float, default=0.2)
    parser.add_argument("--dead-tokens", type=int, required=True)
    parser.add_argument("--aux-k", type=int, default=None)
    parser.add_argument("--aux-k-coef", type=float, default=1 / 32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tensors = load_file(args.data)
    train, heldout = tensors["train"].float(), tensors["heldout"].float()
    d = train.shape[1]
    aux_k = args.aux_k or d // 2
    scale = math.sqrt(d) / float(torch.linalg.vector_norm(train[:16384].double(), dim=1).mean())
    sae = TopKSAE(d, args.latents, args.k)
    with torch.no_grad():
        sae.b_dec.data = geometric_median(train[:16384].double() * scale).float()
    optimizer = torch.optim.Adam(sae.parameters(), lr=args.lr, eps=6.25e-10)
    steps = max(1, -(-args.tokens // args.batch_tokens))
    decay_steps = round(steps * args.decay_fraction)

    def schedule(step):
        warm = min(1.0, (step + 1) / max(1, args.warmup_steps))
        remaining = steps - step
        decay = max(0, remaining) / decay_steps if decay_steps > 0 and remaining < decay_steps else 1.0
        return warm * decay

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    since_fired = torch.zeros(args.latents, dtype=torch.long)
    start = time.perf_counter()
    seen = 0
    for step in range(steps):
        n = min(args.batch_tokens, args.tokens - seen)
        lo = seen % len(train)
        x = train[lo : lo + n] * scale
        dead_mask = since_fired > args.dead_tokens
        fvu, aux, indices, acts = sae(x, dead_mask, aux_k, args.aux_k_coef)
        loss = fvu + args.aux_k_coef * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        since_fired += n
        fired = torch.zeros(args.latents, dtype=torch.bool)
        fired[indices[acts > 0]] = True
        since_fired[fired] = 0
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        lr_schedule.step()
        sae.set_decoder_norm_to_unit_norm()
        seen += n
    seconds = time.perf_counter() - start

    with torch.no_grad():
        total_error, total_norm, total_sum, count = 0.0, 0.0, torch.zeros(d, dtype=torch.float64), 0
        for lo in range(0, len(heldout), 4096):
            x = heldout[lo : lo + 4096] * scale
            acts, indices, _ = sae.encode(x)
            out = sae.decode(acts, indices)
            total_error += float((x - out).double().pow(2).sum())
            total_norm += float(x.double().pow(2).sum())
            total_sum += x.double().sum(0)
            count += len(x)
        variance = total_norm / count - float((total_sum / count).pow(2).sum())
        ev = 1 - (total_error / count) / variance
    figures = {"tokens_per_second": seen / seconds, "explained_variance": ev, "tokens": seen, "seconds": seconds}
    print(f"reference: {seen} tokens in {seconds:.2f} s = {seen / seconds:.0f} tok/s; held-out EV {ev:.4f}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
