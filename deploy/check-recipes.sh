#!/usr/bin/env bash
# Checks the fleet recipes under deploy/ offline: shell syntax, YAML that parses, the k8s
# kustomization builds (with and without the CURVE component), systemd units that
# `systemd-analyze verify` accepts, local-fleet.sh's signal handling against a stub worker,
# and, given the built binary, that every `actcluster SUBCOMMAND --option` the recipes use
# exists in that binary's `--help`. Exits 1 if anything fails; tools that are missing are
# skipped and said so.
# Usage: deploy/check-recipes.sh [path/to/actcluster]   (or ACTCLUSTER=path)
#
# Where options are found: a literal `actcluster SUB …` (also "$ACTCLUSTER SUB", "$binary SUB")
# up to the end of the command; arrays named SUB_args=(…) / SUB_args+=(…); quoted values in
# deploy/systemd/SUB.env; container command+args in k8s YAML (args alone mean the image's
# entrypoint, actcluster); values of the kustomize patches, for the subcommand of their target.
set -uo pipefail
cd "$(dirname "$0")/.."
binary="${1:-${ACTCLUSTER:-}}"
# Subcommands the recipes use before they land in the binary: their options are skipped.
pending=""

failures=0
ok() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }
skip() { echo "skip  $*"; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# --- shell syntax --------------------------------------------------------------------------
while IFS= read -r script; do
    if out="$(bash -n "$script" 2>&1)"; then ok "bash -n $script"; else fail "bash -n $script: $out"; fi
done < <( { find deploy -name '*.sh' -o -name '*.sbatch'; } | sort)

# --- YAML ----------------------------------------------------------------------------------
python=""
for candidate in python3 /usr/bin/python3; do
    # sys.executable: the interpreter itself, not a wrapper such as a pyenv shim (slow to start).
    if command -v "$candidate" >/dev/null && python="$("$candidate" -c 'import sys, yaml; print(sys.executable)' 2>/dev/null)"; then break; fi
    python=""
done
if [ -z "$python" ]; then
    fail "YAML: no python3 with the yaml module (Debian: python3-yaml; deploy/common.sh installs it)"
else
    # One interpreter for every file: prints one ok/FAIL line per file.
    mapfile -t yaml_files < <(find deploy -name '*.yaml' -o -name '*.yml' | sort)
    "$python" - "${yaml_files[@]}" <<'EOF' || failures=$((failures + 1))
import sys, yaml
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            list(yaml.safe_load_all(f))
        print(f"ok    yaml {path}")
    except (OSError, yaml.YAMLError) as error:
        print(f"FAIL  yaml {path}: {error}")
        bad += 1
sys.exit(1 if bad else 0)
EOF
fi

# --- kustomize -----------------------------------------------------------------------------
kustomize=()
if command -v kubectl >/dev/null; then kustomize=(kubectl kustomize); elif command -v kustomize >/dev/null; then kustomize=(kustomize build); fi
if [ ${#kustomize[@]} -eq 0 ]; then
    skip "kustomize build of deploy/k8s (neither kubectl nor kustomize is installed)"
else
    if out="$("${kustomize[@]}" deploy/k8s 2>&1 >/dev/null)"; then ok "${kustomize[*]} deploy/k8s"; else fail "${kustomize[*]} deploy/k8s: $out"; fi
    # The CURVE component as a user enables it; the generator only needs the key files to exist.
    cp -r deploy/k8s "$scratch/k8s"
    sed -i 's/^# components:/components:/; s/^#   - curve/  - curve/' "$scratch/k8s/kustomization.yaml"
    mkdir -p "$scratch/k8s/curve/keys"
    for key in cluster.key cluster.pub worker.key worker.pub allowed; do echo "test" >"$scratch/k8s/curve/keys/$key"; done
    if out="$("${kustomize[@]}" "$scratch/k8s" 2>&1)" && grep -q -- '--curve-server-key' <<<"$out" && grep -q 'secretName: actcluster-curve-' <<<"$out"; then
        ok "${kustomize[*]} deploy/k8s with the curve component"
    else
        fail "${kustomize[*]} deploy/k8s with the curve component: $(tail -n 5 <<<"$out")"
    fi
fi

# --- systemd -------------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null; then
    skip "systemd-analyze verify (not installed)"
else
    # verify needs ExecStart's binary to exist: point the units at a stub. It exits 0 on
    # unknown keys and bad values ("…, ignoring"), so any line naming our files fails.
    mkdir -p "$scratch/units"
    printf '#!/bin/sh\nexit 0\n' >"$scratch/units/actcluster" && chmod +x "$scratch/units/actcluster"
    for unit in deploy/systemd/*.service; do
        sed "s#/usr/local/bin/actcluster#$scratch/units/actcluster#g" "$unit" >"$scratch/units/$(basename "$unit")"
    done
    for unit in deploy/systemd/*.service; do
        name="$(basename "$unit")"
        target="$scratch/units/${name/@.service/@0.service}"
        out="$(cd "$scratch/units" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$target" 2>&1)"
        code=$?
        if [ $code -eq 0 ] && ! grep -q "${name%%@*}" <<<"$out"; then ok "systemd-analyze verify $unit"; else fail "systemd-analyze verify $unit: $out"; fi
    done
fi

# --- local-fleet.sh against a stub worker ----------------------------------------------------
# The stub records its arguments and each SIGTERM, and exits after the first: the script must
# start N × T as asked, and pass one SIGTERM to every worker, not more.
stub="$scratch/fleet/actcluster"
mkdir -p "$scratch/fleet"
cat >"$stub" <<'EOF'
#!/usr/bin/env bash
log=/dev/null
for (( i = 1; i <= $#; i++ )); do [ "${!i}" = --log-file ] && { j=$((i + 1)); log="${!j}"; }; done
# The trap before the line the test waits for: a TERM between the two would kill the stub.
trap 'echo TERM >>"$log"; exit 0' TERM
echo "args $*" >"$log"
while true; do sleep 0.05; done
EOF
chmod +x "$stub"
# A parent (a test runner, say) may have started us with SIGINT/SIGTERM blocked, and the mask
# survives exec: unblock them for the script under test, or its traps never run.
python3 -c 'import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM}); os.execvp(sys.argv[1], sys.argv[1:])' \
    deploy/local-fleet.sh --binary "$stub" --connect tcp://127.0.0.1:1 --workers 3 --threads-per-worker 2 \
    --log-dir "$scratch/fleet/logs" >"$scratch/fleet/out" 2>&1 &
fleet=$!
for _ in $(seq 200); do [ "$(cat "$scratch"/fleet/logs/worker-*.log 2>/dev/null | grep -c '^args')" = 3 ] && break; sleep 0.05; done
sleep 0.2  # let the script reach its wait
kill -TERM "$fleet"
# Never hang the test run: give up after 20 s.
for _ in $(seq 200); do kill -0 "$fleet" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$fleet" 2>/dev/null; then
    pkill -KILL -f "$scratch/fleet/actcluster" || true
    kill -KILL "$fleet" || true
fi
fleet_status=0
wait "$fleet" || fleet_status=$?
started="$(grep -l -- '--threads 2' "$scratch"/fleet/logs/worker-*.log 2>/dev/null | wc -l)"
terms="$(cat "$scratch"/fleet/logs/worker-*.log 2>/dev/null | grep -c '^TERM')"
if [ "$fleet_status" = 0 ] && [ "$started" = 3 ] && [ "$terms" = 3 ]; then
    ok "local-fleet.sh: 3 workers × 2 threads started, one SIGTERM each, exit 0"
else
    fail "local-fleet.sh: status $fleet_status, $started of 3 workers with --threads 2, $terms SIGTERMs (want 3): $(cat "$scratch/fleet/out")"
fi

# --- options against the binary --------------------------------------------------------------
if [ -z "$binary" ]; then
    skip "options against actcluster --help (no binary given: deploy/check-recipes.sh path/to/actcluster)"
elif [ ! -x "$binary" ]; then
    fail "options: $binary is not an executable"
elif [ -z "$python" ]; then
    skip "options against actcluster --help (no python3 with yaml)"
else
    "$python" - "$binary" "$pending" <<'EOF' || failures=$((failures + 1))
import os, re, subprocess, sys, yaml

binary, pending = sys.argv[1], set(sys.argv[2].split())

def help_text(*args):
    return subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=30).stdout

root = help_text()
section = root.split("SUBCOMMANDS:", 1)[1] if "SUBCOMMANDS:" in root else ""
built = set(re.findall(r"^\s{2,}([a-z][a-z-]*)\b", section, re.M))
known = built | pending
options = {}
def options_of(sub):
    if sub not in options:
        options[sub] = set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", help_text(sub))) | {"--help"}
    return options[sub]

uses = []  # (file, subcommand, option)
OPTION = re.compile(r"(?:^|[\s\"'(=\[,])(--[a-z0-9][a-z0-9-]*)")
INVOKE = re.compile(r"(?:[\w./-]*/)?(?<![\w-])(?:actcluster|\$\{?ACTCLUSTER\}?|\$\{?binary\}?)[\"']?[ \t]+([a-z][a-z-]*)(?![\w@.-])")
END = re.compile(r"[;&|`)\n]")

def scan_invocations(path, text):
    text = text.replace("\\\n", " ")
    for match in INVOKE.finditer(text):
        sub = match.group(1)
        if sub not in known:
            continue  # prose such as "the actcluster image"
        rest = text[match.end():]
        end = END.search(rest)
        for option in OPTION.findall(rest[: end.start() if end else len(rest)]):
            uses.append((path, sub, option))

def scan_arrays(path, text):
    for match in re.finditer(r"\b([a-z]+)_args\+?=\(([^)]*)\)", text):
        if match.group(1) in known:
            for option in OPTION.findall(match.group(2)):
                uses.append((path, match.group(1), option))

def container_commands(doc):
    if not isinstance(doc, dict):
        return  # a JSON patch (a list of operations): read with its kustomization below
    spec = doc.get("spec", {}) or {}
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template") or {}
    for container in (template.get("spec") or {}).get("containers", []) or []:
        words = [str(w) for w in (container.get("command") or ["actcluster"]) + (container.get("args") or [])]
        yield " ".join(words)

files = []
for top, _, names in os.walk("deploy"):
    files += [os.path.join(top, n) for n in names]
subcommand_of_target = {}
for path in sorted(files):
    name = os.path.basename(path)
    text = open(path, errors="replace").read()
    if name.endswith((".sh", ".sbatch", ".service")) or name == "Containerfile":
        scan_invocations(path, text)
        scan_arrays(path, text)
    elif name.endswith(".env"):
        sub = name[:-4]
        for value in re.findall(r'^#?\s*[A-Z_]+="([^"]*)"', text, re.M):
            for option in OPTION.findall(" " + value):
                uses.append((path, sub, option))
    elif name.endswith((".yaml", ".yml")):
        for doc in yaml.safe_load_all(text):
            for line in container_commands(doc):
                scan_invocations(path, line)
                found = INVOKE.search(line)
                if found and found.group(1) in known:
                    subcommand_of_target[(doc["kind"], doc["metadata"]["name"])] = found.group(1)

# kustomize patches: option strings anywhere in the patch values, for the target's subcommand.
def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values(): yield from strings(v)
    elif isinstance(value, list):
        for v in value: yield from strings(v)
for path in sorted(files):
    if os.path.basename(path) != "kustomization.yaml":
        continue
    for patch in (yaml.safe_load(open(path)) or {}).get("patches", []) or []:
        target = patch.get("target", {})
        sub = subcommand_of_target.get((target.get("kind"), target.get("name")))
        body = patch.get("patch") or open(os.path.join(os.path.dirname(path), patch["path"])).read()
        where = os.path.join(os.path.dirname(path), patch.get("path", "kustomization.yaml"))
        if sub is None:
            print(f"FAIL  {where}: patch target {target} runs no actcluster subcommand in deploy/k8s")
            sys.exit(1)
        for text in strings(yaml.safe_load(body)):
            for option in OPTION.findall(" " + text):
                uses.append((where, sub, option))

bad, skipped, checked = [], set(), set()
for path, sub, option in uses:
    if sub not in built:
        skipped.add(sub)
        continue
    checked.add((sub, option))
    if option not in options_of(sub):
        bad.append(f"{path}: `actcluster {sub}` has no option {option}")
for sub in sorted(skipped):
    print(f"skip  options of `actcluster {sub}`: not in this binary yet")
for line in sorted(set(bad)):
    print(f"FAIL  {line}")
subs = sorted({s for s, _ in checked})
print(f"{'ok   ' if not bad else 'FAIL '} {len(checked)} options of {', '.join(subs)} checked against {binary} --help")
sys.exit(1 if bad else 0)
EOF
fi

if [ "$failures" -gt 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all recipe checks passed"
