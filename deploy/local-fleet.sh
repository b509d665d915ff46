#!/usr/bin/env bash
# Starts N actcluster workers on this host, T forward-pass threads each, so that N × T cores
# are used and none twice. Logs go to one file per worker; the script waits for all of them
# and passes SIGINT/SIGTERM on (first signal: finish the unit; second: give it back).
#
# Usage: deploy/local-fleet.sh --connect ENDPOINT [--workers N] [--threads-per-worker T]
#            [--curve-server-key FILE] [--curve-key PREFIX] [--stream-policy block|drop]
#            [--log-dir DIR] [--name-prefix P] [--pin] [--binary PATH]
# Defaults: N × T = nproc (T = 1 when neither is given), logs under runs/fleet-logs/,
# binary: actcluster on PATH, else the release build of this checkout.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }

connect="" workers="" threads="" server_key="" own_key="" policy="" log_dir="runs/fleet-logs"
name_prefix="$(hostname -s 2>/dev/null || hostname)" pin=0 binary="${ACTCLUSTER:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --connect) connect="${2:?}"; shift 2 ;;
        --workers) workers="${2:?}"; shift 2 ;;
        --threads-per-worker) threads="${2:?}"; shift 2 ;;
        --curve-server-key) server_key="${2:?}"; shift 2 ;;
        --curve-key) own_key="${2:?}"; shift 2 ;;
        --stream-policy) policy="${2:?}"; shift 2 ;;
        --log-dir) log_dir="${2:?}"; shift 2 ;;
        --name-prefix) name_prefix="${2:?}"; shift 2 ;;
        --pin) pin=1; shift ;;
        --binary) binary="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "error: unknown argument '$1'" >&2; usage ;;
    esac
done
[ -n "$connect" ] || { echo "error: give --connect, e.g. --connect tcp://coordinator:5555" >&2; usage; }

if [ -z "$binary" ]; then
    if command -v actcluster >/dev/null; then
        binary="$(command -v actcluster)"
    else
        binary="$(cd "$(dirname "$0")/.." && pwd)/.build/release/actcluster"
    fi
fi
[ -x "$binary" ] || { echo "error: $binary is not an executable; build with swift build -c release --product actcluster or pass --binary" >&2; exit 1; }

# nproc honours the CPU affinity mask and cgroup quotas this shell runs under.
cores="$(nproc)"
is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
if [ -z "$workers" ] && [ -z "$threads" ]; then threads=1; fi
if [ -n "$threads" ] && ! is_count "$threads"; then echo "error: --threads-per-worker must be a positive integer" >&2; exit 64; fi
if [ -n "$workers" ] && ! is_count "$workers"; then echo "error: --workers must be a positive integer" >&2; exit 64; fi
if [ -z "$workers" ]; then workers=$(( cores / threads > 0 ? cores / threads : 1 )); fi
if [ -z "$threads" ]; then threads=$(( cores / workers > 0 ? cores / workers : 1 )); fi
if [ $(( workers * threads )) -gt "$cores" ]; then
    echo "warning: $workers workers × $threads threads = $(( workers * threads )) threads on $cores cores: they will compete for cores" >&2
fi

options=()
[ -n "$server_key" ] && options+=(--curve-server-key "$server_key")
[ -n "$own_key" ] && options+=(--curve-key "$own_key")
[ -n "$policy" ] && options+=(--stream-policy "$policy")

# --pin gives worker i the cores [i*T, (i+1)*T) of the ones this shell may use.
allowed=()
if [ "$pin" = 1 ]; then
    command -v taskset >/dev/null || { echo "error: --pin needs taskset (Debian package util-linux)" >&2; exit 1; }
    mapfile -t allowed < <(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)), sep="\n")')
    if [ $(( workers * threads )) -gt "${#allowed[@]}" ]; then
        echo "error: --pin needs $(( workers * threads )) cores, this shell may use ${#allowed[@]}" >&2; exit 1
    fi
fi

# Forward each signal to every worker still running; the workers decide what it means.
# Workers run in their own sessions (setsid), so a Ctrl-C at the terminal reaches them once,
# through this script, and not twice (a second signal would give their units back).
pids=()
forward() {
    echo "received SIG$1, passing it to the workers" >&2
    for pid in "${pids[@]}"; do kill -s "$1" "$pid" 2>/dev/null || true; done
}
trap 'forward INT' INT
trap 'forward TERM' TERM

mkdir -p "$log_dir"
for (( i = 0; i < workers; i++ )); do
    prefix=(setsid)
    if [ "$pin" = 1 ]; then
        set_="$(IFS=,; echo "${allowed[*]:$(( i * threads )):$threads}")"
        prefix+=(taskset -c "$set_")
    fi
    "${prefix[@]}" "$binary" worker --connect "$connect" --threads "$threads" --name "$name_prefix-$i" \
        --log-file "$log_dir/worker-$i.log" "${options[@]}" >>"$log_dir/worker-$i.out" 2>&1 &
    pids+=($!)
done
echo "started $workers workers × $threads threads against $connect (logs: $log_dir/worker-*.log, pids ${pids[*]})"

# `wait PID` returns early when a trapped signal arrives: wait until the child is gone, then
# once more, which gives its real exit status (bash keeps it).
status=0
for (( i = 0; i < workers; i++ )); do
    while kill -0 "${pids[$i]}" 2>/dev/null; do wait "${pids[$i]}" || true; done
    code=0
    wait "${pids[$i]}" || code=$?
    if [ "$code" -ne 0 ]; then
        echo "worker $i (pid ${pids[$i]}) exited with status $code; see $log_dir/worker-$i.log" >&2
        status=1
    fi
done
echo "all $workers workers exited"
exit "$status"
