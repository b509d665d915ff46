#!/usr/bin/env python3
"""Throughput of the Rust `tokenizers` library on the corpus ThroughputBenchmark.swift uses.

The MiniLM fixture lines repeated to about 1 MB, encoded one line per call on one thread, with
padding and truncation off (as transformers' tokenizer(text) does). Compare with

    TOKENIZERS_BENCHMARK=1 swift test -c release --filter ThroughputBenchmark

Usage: RAYON_NUM_THREADS=1 .build/venv-tok/bin/python Tests/Reference/bench_tokenizers.py
"""
import os
import time

from tokenizers import Tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TOKENIZERS = {
    "tiny-bert-wordpiece": "tiny-bert/tokenizer.json",
    "tiny-gpt2-bytelevel-bpe": "tiny-gpt2/tokenizer.json",
    "llama3-bpe": "tiny-llama/tokenizer.json",
    "sp-bpe": "tiny-llama2/tokenizer.json",
    "sp-bpe-legacy": "tokenizers/sp-bpe-legacy/tokenizer.json",
    "minilm-wordpiece": "minilm/tokenizer.json",
}


def main():
    with open(os.path.join(FIXTURES, "minilm/lines.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line]
    corpus, size = [], 0
    while size < 1_000_000:
        for line in lines:
            corpus.append(line)
            size += len(line.encode("utf-8"))
    for name, path in TOKENIZERS.items():
        tokenizer = Tokenizer.from_file(os.path.join(FIXTURES, path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            tokens = sum(len(tokenizer.encode(line).ids) for line in corpus)
            best = min(best, time.process_time() - start)
        print(f"{name}: {size / best / 1e6:.2f} MB/s, {tokens / best / 1e6:.2f} M tokens/s (CPU time, 1 thread)")


if __name__ == "__main__":
    main()
