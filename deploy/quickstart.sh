#!/usr/bin/env bash
# From nothing to collected shards and a trained dictionary, on this machine:
# installs the Debian packages, fetches all-MiniLM-L6-v2 (no torch), turns Debian's
# fortunes into a JSONL corpus, builds in release mode and runs `actcluster run` with
# 2 workers. Everything goes under runs/quickstart/; a rerun reuses what exists (and
# resumes an interrupted run).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/common.sh

out="runs/quickstart"
mkdir -p "$out"

ensure_packages fortunes
model="$(fetch_minilm)"

corpus="$out/fortunes.jsonl"
if [ ! -s "$corpus" ]; then
    echo "==> converting Debian's fortunes into $corpus"
    # One fortune per line; capped at about 1.2 MB of text so the whole run stays short.
    python3 - "$corpus" <<'PYTHON'
import glob, json, os, sys
texts, size = [], 0
for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
    if os.path.isdir(path) or path.endswith(".dat") or os.path.islink(path):
        continue
    with open(path, encoding="utf-8", errors="replace") as handle:
        for fortune in handle.read().split("\n%\n"):
            text = " ".join(fortune.replace("%", " ").split())
            if len(text) >= 40 and size < 1_200_000:
                texts.append(text)
                size += len(text)
with open(sys.argv[1] + ".tmp", "w", encoding="utf-8") as handle:
    for text in texts:
        handle.write(json.dumps({"text": text}) + "\n")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print(f"    {len(texts)} fortunes, {size} bytes")
PYTHON
fi

echo "==> building actcluster (release)"
swift build -c release --product actcluster
binary="$(swift build -c release --show-bin-path)/actcluster"

echo "==> actcluster run: 2 workers, then a TopK dictionary on blocks.3.hook_resid_post"
"$binary" run --corpus "$corpus" --format jsonl --model "$model" --hook blocks.3.hook_resid_post \
    --workers 2 --threads-per-worker 1 --trainer-threads 2 --out "$out" \
    --expansion 8 --k 32 --tokens 1000000

echo
echo "Done. Inspect the shards:  $binary inspect $out/shards"
echo "Verify every checksum:     $binary verify $out/shards"
echo "Evaluate the dictionary:   $binary eval --sae $out/sae --shards $out/shards"
echo "Watch a run's logs:        tail -f $out/logs/*.log"
