#!/usr/bin/env python3
"""Gradient fixtures for the trainer's sparse kernels, from torch autograd.

Writes Tests/Reference/fixtures/trainer/gradients.safetensors (about 60 KB). For each case
`{topk,batchtopk,relu}_{even,odd}` (even: n=8, d=16, m=64; odd: n=7, d=13, m=37):

    CASE.x          F32 [n, d]   normalised input rows
    CASE.W_enc      F32 [m, d]   nn.Linear-layout encoder weight
    CASE.b_enc      F32 [m]
    CASE.W_dec      F32 [m, d]
    CASE.b_dec      F32 [d]
    CASE.dead       I64 [m]      1 for latents treated as dead (AuxK), else 0
    CASE.loss       F64 [1]      total loss
    CASE.grad.NAME  F32          d loss / d NAME for the four parameters (autograd)
    CASE.config     I64 [4]      n, d, m, k

Losses (the trainer's definitions, see Sources/Trainer/SAETrainer.swift):
    topk/batchtopk: ‖x − x̂‖²/V + α·min(dead/k_aux, 1)·‖ê − e.detach()‖²/V, V = Σ‖x − x̄‖²,
                    ê = W_decᵀ z_aux (top k_aux = min(d/2, dead) ReLU pre-activations of dead latents, no bias)
    relu:           ‖x − x̂‖²/n + λ Σ z_i ‖W_dec,i‖ / n
with α = 1/32, λ = 0.3. Float64 throughout, stored as float32 inputs (the Swift side computes
in float32 from exactly these inputs).

    /work/main/.build/venv-ref/bin/python Tests/Reference/make_trainer_fixtures.py
"""
import os

import torch
from safetensors.torch import save_file

ALPHA = 1 / 32
LAMBDA = 0.3


def case(arch, n, d, m, k, dead_count, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g).float()
    bound = 1 / d**0.5
    w_enc = ((torch.rand(m, d, generator=g) * 2 - 1) * bound).float()
    w_dec = w_enc / w_enc.norm(dim=1, keepdim=True)
    if arch == "relu":
        w_dec = w_dec * (1 + 0.5 * torch.rand(m, 1, generator=g))
    b_enc = (torch.randn(m, generator=g) * 0.05).float()
    b_dec = (torch.randn(d, generator=g) * 0.1).float()
    dead = torch.zeros(m, dtype=torch.int64)
    dead[torch.randperm(m, generator=g)[:dead_count]] = 1

    params = {name: t.double().clone().requires_grad_(True) for name, t in
              dict(W_enc=w_enc, b_enc=b_enc, W_dec=w_dec.float(), b_dec=b_dec).items()}
    xd = x.double()
    pre = torch.relu((xd - params["b_dec"]) @ params["W_enc"].T + params["b_enc"])
    if arch == "topk":
        values, indices = pre.topk(k, dim=1)
        z = torch.zeros_like(pre).scatter(1, indices, values)
    elif arch == "batchtopk":
        values, indices = pre.flatten().topk(n * k)
        z = torch.zeros_like(pre).flatten().scatter(0, indices, values).reshape(n, m)
    else:
        z = pre
    xhat = z @ params["W_dec"] + params["b_dec"]
    e = xd - xhat
    if arch == "relu":
        norms = params["W_dec"].norm(dim=1)
        loss = e.pow(2).sum() / n + LAMBDA * (z * norms).sum() / n
    else:
        variance = (xd - xd.mean(0)).pow(2).sum()
        loss = e.pow(2).sum() / variance
        dead_n = int(dead.sum())
        if dead_n:
            k_aux = min(d // 2, dead_n)
            scale = min(dead_n / (d // 2), 1.0)
            masked = torch.where(dead.bool()[None], pre, -torch.inf)
            aux_values, aux_indices = masked.topk(k_aux, dim=1)
            z_aux = torch.zeros_like(pre).scatter(1, aux_indices, aux_values)
            e_hat = z_aux @ params["W_dec"]
            loss = loss + ALPHA * scale * (e_hat - e.detach()).pow(2).sum() / variance
    loss.backward()
    out = {"x": x, "W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec.float(), "b_dec": b_dec, "dead": dead,
           "loss": loss.detach().reshape(1), "config": torch.tensor([n, d, m, k], dtype=torch.int64)}
    for name, p in params.items():
        out["grad." + name] = p.grad.float()
    return out


def main():
    tensors = {}
    for arch, k in (("topk", 4), ("batchtopk", 4), ("relu", 0)):
        for size, (n, d, m, kk, dead, seed) in {"even": (8, 16, 64, k, 20, 1), "odd": (7, 13, 37, max(k - 1, 0), 5, 2)}.items():
            for name, t in case(arch, n, d, m, kk, 0 if arch == "relu" else dead, seed).items():
                tensors[f"{arch}_{size}.{name}"] = t.contiguous()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "trainer", "gradients.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path)
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
