#!/usr/bin/env python3
"""Reference for `actcluster bench codec`: python-blosc2, LZ4 + BITSHUFFLE, one thread.

Reads `activations` (float32 [rows, d]) from an `actcluster export` safetensors file, converts
it to each stored dtype the way actcluster does (bf16: torch-style round-to-nearest-even;
fp16: IEEE round-to-nearest-even), and compresses those bytes with typesize = element size.

Figures mean the same as actcluster's: ratio = stored-dtype bytes / compressed bytes, and
Decompression is timed chunk by chunk into one reused buffer (a streaming reader), as
actcluster decodes block by block; the text output also shows decoding into one object.
MB/s = 10^6 bytes of activations *in the stored dtype* per second of the thread's CPU time
(time.thread_time(), steadier than wall time on a shared machine), the best of --repeat runs. With --json the last line is
{"bf16": {"ratio": …, "compress_mb_s": …, "decompress_mb_s": …}, "fp16": {…}, "fp32": {…}}.

    python -m venv .build/venv-bench && .build/venv-bench/bin/pip install blosc2 numpy safetensors
    .build/venv-bench/bin/python Tests/Reference/bench_codec_blosc2.py --input F.safetensors [--json]
"""
import argparse
import json
import time

import blosc2
import numpy as np
from safetensors.numpy import load_file


def to_bf16_bits(values):
    """float32 -> bf16 bit patterns, round-to-nearest-even; NaN stays a quiet NaN (as torch)."""
    bits = values.view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def stored_bytes(activations, dtype):
    if dtype == "fp32":
        return activations.astype("<f4").tobytes(), 4
    if dtype == "fp16":
        return activations.astype("<f2").tobytes(), 2
    return to_bf16_bits(activations).astype("<u2").tobytes(), 2


def best_time(function, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        function()
        best = min(best, time.thread_time() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="safetensors file with `activations` float32 [rows, d]")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clevel", type=int, default=5, help="Blosc2 compression level (default 5, Blosc2's own default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    blosc2.set_nthreads(1)
    activations = load_file(args.input)["activations"].astype(np.float32)
    results = {}
    for dtype in ("bf16", "fp16", "fp32"):
        raw, typesize = stored_bytes(activations, dtype)
        cparams = {"codec": blosc2.Codec.LZ4, "clevel": args.clevel, "typesize": typesize,
                   "filters": [blosc2.Filter.BITSHUFFLE], "nthreads": 1}
        schunk = blosc2.SChunk(chunksize=4 << 20, data=raw, cparams=cparams, dparams={"nthreads": 1})
        compressed = schunk.cbytes

        def compress():
            blosc2.SChunk(chunksize=4 << 20, data=raw, cparams=cparams, dparams={"nthreads": 1})

        buffer = bytearray(schunk.chunksize)

        def decompress():  # streaming: every chunk into the same buffer, as actcluster's figure
            for n in range(schunk.nchunks):
                schunk.decompress_chunk(n, buffer)

        def decompress_all():  # into one object holding everything
            schunk[:]

        assert schunk[:] == raw
        compress_s = best_time(compress, args.repeat)
        decompress_s = best_time(decompress, args.repeat)
        decompress_all_s = best_time(decompress_all, args.repeat)
        results[dtype] = {
            "ratio": round(len(raw) / compressed, 4),
            "compress_mb_s": round(len(raw) / compress_s / 1e6, 1),
            "decompress_mb_s": round(len(raw) / decompress_s / 1e6, 1),
        }
        if not args.json:
            r = results[dtype]
            print(f"{dtype}: {len(raw)} -> {compressed} bytes, ratio {r['ratio']:.3f}, "
                  f"compress {r['compress_mb_s']:.0f} MB/s, decompress {r['decompress_mb_s']:.0f} MB/s "
                  f"(into one bytes object: {len(raw) / decompress_all_s / 1e6:.0f} MB/s) "
                  f"(blosc2 {blosc2.__version__}, LZ4 + BITSHUFFLE, clevel {args.clevel}, 1 thread)")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
