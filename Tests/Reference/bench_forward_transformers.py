#!/usr/bin/env python3
"""Reference benchmark: Hugging Face transformers fp32 forward throughput on CPU.

Times `AutoModel.from_pretrained(DIR)` forward passes on random token ids
(batch x context, attention_mask all ones) under torch.inference_mode() and
prints tokens/s (= batch * context * iters / total seconds of the timed iters).
This is the number the Swift implementation is compared against.

Usage (from the repository root, venv from Tests/Reference/requirements.txt):

    .build/venv-ref/bin/python Tests/Reference/bench_forward_transformers.py \
        --model /path/to/all-MiniLM-L6-v2 --batch 32 --context 128 --threads 2 \
        [--hidden-states] [--autocast-bf16] [--attn default|eager|sdpa] [--warmup 2] [--iters 5] [--json]

--hidden-states   output_hidden_states=True (every layer's residual is kept,
                  like an activation-collection run)
--autocast-bf16   wrap the forward in torch.autocast("cpu", dtype=torch.bfloat16)
--json            the last line printed is one JSON object:
                  {"tokens_per_second": ..., "batch": ..., "context": ..., "threads": ..., "torch": "..."}
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="transformers fp32 CPU forward benchmark")
    ap.add_argument("--model", default=os.environ.get("MINILM_DIR"), help="model folder (config.json + model.safetensors)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--hidden-states", action="store_true", help="request output_hidden_states=True")
    ap.add_argument("--autocast-bf16", action="store_true", help='torch.autocast("cpu", dtype=torch.bfloat16)')
    ap.add_argument(
        "--attn",
        default="default",
        choices=["default", "eager", "sdpa"],
        help="attn_implementation (default: whatever transformers picks, SDPA for BERT in current releases)",
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="last line is a JSON object")
    args = ap.parse_args()
    if not args.model:
        sys.exit("--model DIR (or $MINILM_DIR) is required")

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    config = AutoConfig.from_pretrained(args.model)
    options = {} if args.attn == "default" else {"attn_implementation": args.attn}
    model = AutoModel.from_pretrained(args.model, dtype=torch.float32, **options)
    attn = getattr(model.config, "_attn_implementation", args.attn)
    model.eval()

    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.context), generator=g, dtype=torch.long)
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=args.hidden_states)
    if not getattr(config, "is_encoder_decoder", False) and config.model_type != "bert":
        kwargs["use_cache"] = False

    def forward():
        with torch.inference_mode():
            if args.autocast_bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(**kwargs)
            else:
                out = model(**kwargs)
        # touch the result so nothing is lazily skipped
        return out.last_hidden_state.float().sum().item()

    for _ in range(args.warmup):
        forward()
    times = []
    for i in range(args.iters):
        t0 = time.perf_counter()
        forward()
        dt = time.perf_counter() - t0
        times.append(dt)
        print(f"iter {i}: {dt * 1000:.1f} ms  ({args.batch * args.context / dt:.0f} tokens/s)", flush=True)

    tokens = args.batch * args.context * args.iters
    tps = tokens / sum(times)
    print(
        f"model={args.model} type={config.model_type} batch={args.batch} context={args.context} threads={args.threads} "
        f"attn={attn} hidden_states={args.hidden_states} autocast_bf16={args.autocast_bf16} "
        f"median_iter_ms={statistics.median(times) * 1000:.1f} torch={torch.__version__} "
        f"transformers={transformers.__version__}"
    )
    print(f"tokens/s: {tps:.1f}")
    if args.json:
        print(
            json.dumps(
                {
                    "tokens_per_second": round(tps, 2),
                    "batch": args.batch,
                    "context": args.context,
                    "threads": args.threads,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "attn": attn,
                    "hidden_states": args.hidden_states,
                    "autocast_bf16": args.autocast_bf16,
                    "iters": args.iters,
                    "median_iter_seconds": round(statistics.median(times), 6),
                }
            )
        )


if __name__ == "__main__":
    main()
