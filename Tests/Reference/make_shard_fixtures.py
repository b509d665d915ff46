#!/usr/bin/env python3
"""Fixtures for the shard codec's float conversions, from torch.

Writes Tests/Reference/fixtures/shards/conversions.safetensors (about 55 KB):

    f32_in        F32  [N]  tricky float32 values: every exponent with mantissas at, just
                            below and just above the bf16 and fp16 rounding ties, fp16
                            subnormals, maxima and overflow, zeros, infinities, NaNs with
                            payloads and signs, plus random bit patterns
    bf16_out      BF16 [N]  torch: f32_in.to(torch.bfloat16)
    f16_out       F16  [N]  torch: f32_in.to(torch.float16)
    f16_in        F16  [M]  tricky binary16 patterns (subnormals, maxima, infinities, NaNs)
    f16_in_f32    F32  [M]  torch: f16_in.to(torch.float32)

torch converts NaN to bfloat16 differently depending on the kernel: the scalar definition
(c10::BFloat16, used by ATEN_CPU_CAPABILITY=default and for 0-dim tensors) gives 0x7FC0,
the AVX2/AVX-512 kernels give 0xFFFF. actcluster follows the scalar definition, so bf16_out
comes from a run with ATEN_CPU_CAPABILITY=default; the script checks that both kernels agree
on every non-NaN value. fp16 conversions come from the vectorised kernels (vcvtps2ph /
vcvtph2ps: NaN sign and top payload bits kept); the script checks the scalar kernels agree
on every non-NaN value.

    /work/main/.build/venv-ref/bin/python Tests/Reference/make_shard_fixtures.py
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "shards", "conversions.safetensors")

CONVERT = r"""
import sys, numpy as np, torch
f32 = np.load(sys.argv[1]); f16 = np.load(sys.argv[2])
t = torch.from_numpy(f32.view(np.float32).copy())
bf16 = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
h = t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)
back = torch.from_numpy(f16.view(np.int16).copy()).view(torch.float16).to(torch.float32).numpy().view(np.uint32)
np.savez(sys.argv[3], bf16=bf16, f16=h, back=back, capability=np.array(torch.backends.cpu.get_cpu_capability()),
         version=np.array(torch.__version__))
"""


def tricky_f32():
    values = set()
    for sign in (0, 0x80000000):
        for exponent in range(256):
            base = sign | (exponent << 23)
            for low in (0, 1, 0x7FFF, 0x8000, 0x8001, 0x18000, 0xFFF, 0x1000, 0x1001, 0x3000, 0x7FFFFF):
                values.add(base | low)
    # fp16 subnormal range and the smallest normal, with ties at every shift
    for exponent in range(100, 115):
        for mantissa in (0, 1, 0x1000, 0x2000, 0x3000, 0x400000, 0x7FFFFF, 0x4000, 0x6000, 0x200000, 0x600000):
            values.add((exponent << 23) | mantissa)
            values.add(0x80000000 | (exponent << 23) | mantissa)
    named = [
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000,  # zeros, infinities
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FC12345, 0xFFC12345, 0x7FBFFFFF, 0x7FFFFFFF,  # NaNs
        0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001, 0x7F7EFFFF,  # bf16 overflow edge
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x477FFFFF, 0x47800000,  # fp16 max / overflow
        0x38800000, 0x387FFFFF, 0x387FF000, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33800000, 0x33C00000,  # fp16 small
        0x00000001, 0x007FFFFF, 0x00800000, 0x80000001,  # float32 subnormals
    ]
    values.update(named)
    rng = np.random.default_rng(4)
    values.update(int(v) for v in rng.integers(0, 2**32, size=600, dtype=np.uint64))
    values.update(int(v) for v in np.float32(rng.standard_normal(600) * 3).view(np.uint32))
    return np.array(sorted(values), dtype=np.uint32)


def tricky_f16():
    values = set()
    for sign in (0, 0x8000):
        for exponent in range(32):
            for mantissa in (0, 1, 2, 0x155, 0x200, 0x201, 0x2AA, 0x3FE, 0x3FF):
                values.add(sign | (exponent << 10) | mantissa)
    return np.array(sorted(values), dtype=np.uint16)


def run(f32, f16, env):
    with tempfile.TemporaryDirectory() as folder:
        a, b, out = (os.path.join(folder, n) for n in ("a.npy", "b.npy", "out.npz"))
        np.save(a, f32)
        np.save(b, f16)
        subprocess.run([sys.executable, "-c", CONVERT, a, b, out], check=True, env=env)
        with np.load(out) as result:
            return {k: result[k] for k in result.files}


def main():
    from safetensors.numpy import save_file

    f32 = tricky_f32()
    f16 = tricky_f16()
    vector = run(f32, f16, dict(os.environ))
    scalar = run(f32, f16, dict(os.environ, ATEN_CPU_CAPABILITY="default"))
    assert str(scalar["capability"]) == "DEFAULT", scalar["capability"]
    nan = np.isnan(f32.view(np.float32))
    assert np.array_equal(vector["bf16"][~nan], scalar["bf16"][~nan]), "torch kernels disagree on non-NaN bf16"
    assert np.all(scalar["bf16"][nan] == 0x7FC0), "expected c10::BFloat16 NaN 0x7FC0"
    assert np.array_equal(vector["f16"][~nan], scalar["f16"][~nan]), "torch kernels disagree on non-NaN fp16"
    half_nan = ((f16 & 0x7C00) == 0x7C00) & ((f16 & 0x3FF) != 0)
    assert np.array_equal(vector["back"][~half_nan], scalar["back"][~half_nan]), "torch kernels disagree on fp16 -> fp32"

    tensors = {
        "f32_in": f32.view(np.float32),
        "bf16_out": scalar["bf16"].view(np.uint16),
        "f16_out": vector["f16"].view(np.float16),
        "f16_in": f16.view(np.float16),
        "f16_in_f32": vector["back"].view(np.float32),
    }
    # safetensors.numpy has no bfloat16 dtype: write BF16 by hand below.
    metadata = {
        "torch": str(vector["version"]),
        "vector_capability": str(vector["capability"]),
        "bf16_source": "ATEN_CPU_CAPABILITY=default (c10::BFloat16: NaN -> 0x7FC0)",
        "f16_source": f"{vector['capability']} kernels (vcvtps2ph / vcvtph2ps)",
    }
    write_safetensors(OUT, tensors, metadata)
    print(f"wrote {OUT}: {len(f32)} float32 values, {len(f16)} binary16 values; {json.dumps(metadata)}")


def write_safetensors(path, tensors, metadata):
    """A minimal writer that also knows BF16 (raw little-endian bits)."""
    dtypes = {"bf16_out": "BF16"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        dtype = dtypes.get(name) or {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}[array.dtype]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for blob in blobs:
            handle.write(blob)


if __name__ == "__main__":
    main()
