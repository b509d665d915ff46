#!/usr/bin/env python3
"""Checks an `actcluster export-sae` folder against SAELens and against our checkpoint.

    actcluster train ... --out RUN
    actcluster export-sae RUN --out RUN/saelens
    actcluster export SHARDS --format safetensors --out rows.safetensors
    python Tests/Reference/check_saelens_export.py --checkpoint RUN --saelens RUN/saelens --activations rows.safetensors

Loads the export with `sae_lens.SAE.load_from_disk`, and independently re-implements our
encoder and decoder in numpy from the checkpoint (normalised units: sae.safetensors +
config.json) to check that the folded-in normalisation, the W_enc transpose and the
activation function agree. Needs sae-lens (a venv of its own is fine); not a test.
Prints the largest differences; exits 1 if any exceeds the tolerance.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file


def ours(checkpoint, x):
    folder = checkpoint
    for candidate in (checkpoint, os.path.join(checkpoint, "latest"), os.path.join(checkpoint, "checkpoints", "latest")):
        if os.path.exists(os.path.join(candidate, "config.json")):
            folder = candidate
            break
    config = json.load(open(os.path.join(folder, "config.json")))["dictionary"]
    w = load_file(os.path.join(folder, "sae.safetensors"))
    s = np.float64(config["normalization_scale"])
    xn = x.astype(np.float64) * s
    pre = (xn - w["b_dec"]) @ w["W_enc"].astype(np.float64).T + w["b_enc"]
    acts = np.maximum(pre, 0)
    arch = config["architecture"]
    if arch == "topk":
        k = config["k"]
        keep = np.argpartition(-acts, k - 1, axis=1)[:, :k]
        z = np.zeros_like(acts)
        np.put_along_axis(z, keep, np.take_along_axis(acts, keep, axis=1), axis=1)
    elif arch == "batchtopk":
        z = np.where(pre > config["threshold"], acts, 0)
    else:
        z = acts
    xhat = (z @ w["W_dec"].astype(np.float64) + w["b_dec"]) / s
    return config, z / s, xhat


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--saelens", required=True)
    parser.add_argument("--activations", required=True, help="safetensors with `activations` [rows, d]")
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    from sae_lens import SAE

    x = load_file(args.activations)["activations"][: args.rows].astype(np.float32)
    sae = SAE.load_from_disk(args.saelens, device="cpu")
    print(f"SAELens loaded {type(sae).__name__}: d_in={sae.cfg.d_in} d_sae={sae.cfg.d_sae} "
          f"hook={sae.cfg.metadata.hook_name} model={sae.cfg.metadata.model_name}")
    with torch.no_grad():
        z_lens = sae.encode(torch.from_numpy(x)).double().numpy()
        xhat_lens = sae.decode(torch.from_numpy(z_lens).float()).double().numpy()
    config, z_ours, xhat_ours = ours(args.checkpoint, x)
    scale_z = max(np.abs(z_ours).max(), 1e-12)
    scale_x = max(np.abs(xhat_ours).max(), 1e-12)
    dz = np.abs(z_lens - z_ours).max() / scale_z
    dx = np.abs(xhat_lens - xhat_ours).max() / scale_x
    l0_lens = (z_lens > 0).sum(1).mean()
    l0_ours = (z_ours > 0).sum(1).mean()
    var = ((x - x.mean(0)) ** 2).sum(1).mean()
    ev = 1 - ((x - xhat_lens) ** 2).sum(1).mean() / var
    print(f"architecture {config['architecture']}: rows {len(x)}, L0 SAELens {l0_lens:.2f} vs ours {l0_ours:.2f}, "
          f"EV through SAELens {ev:.4f}")
    print(f"max |z_saelens - z_ours| / max|z| = {dz:.2e}; max |x̂_saelens - x̂_ours| / max|x̂| = {dx:.2e}")
    ok = dz <= args.tolerance and dx <= args.tolerance
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
