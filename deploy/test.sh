#!/usr/bin/env bash
# Installs what the tests need, builds in release mode (with testing enabled: the numeric
# tests are slow in debug), and runs the whole suite. Exits non-zero if anything fails.
# Usage: deploy/test.sh [extra `swift test` arguments, e.g. --filter LZ4]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/common.sh

ensure_packages
export ACTCLUSTER_TEST_MODEL="${ACTCLUSTER_TEST_MODEL:-$(fetch_minilm .build/models)}"
echo "==> test model: $ACTCLUSTER_TEST_MODEL"

flags=(-c release -Xswiftc -enable-testing)
mkdir -p .build
echo "==> building"
swift build "${flags[@]}" --build-tests 2>&1 | tee .build/test-build.log
# Zero warnings in our own code (a fresh clone compiles every file, so all would show).
if grep -E "^$(pwd)/(Sources|Tests)/.*warning:" .build/test-build.log; then
    echo "error: the build has warnings in our code (listed above)" >&2
    exit 1
fi

echo "==> testing"
# The suite runs in parallel, so a failure can scroll far up: name the failures again last.
status=0
swift test "${flags[@]}" --skip-build "$@" 2>&1 | tee .build/test.log || status=$?
if [ "$status" -ne 0 ]; then
    # On both streams: a CI page that shows only one of them still names the failure.
    { echo "==> the tests failed (exit $status); the failing lines, also in .build/test.log:"
      grep -E "✘|error:|Fatal error|unexpected signal|Exited with" .build/test.log | grep -v "passed after" | head -60 || true
    } | tee /dev/stderr
fi

# Release builds of the coordinator's modules skip the run-time exclusivity checks (see
# Package.swift); a debug build keeps them. Its run of the cluster suites is where an
# overlapping access would trap. Only on a full run: a filtered run is a quick look.
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
    echo "==> the cluster suites again, in a debug build (run-time exclusivity checks on)"
    if ! swift build --build-tests > .build/test-debug-build.log 2>&1; then
        grep -E "error:" .build/test-debug-build.log | head -30 >&2 || tail -30 .build/test-debug-build.log >&2
        echo "error: the debug build failed (.build/test-debug-build.log)" >&2
        exit 1
    fi
    swift test --skip-build --filter "ClusterProtocolTests|CoordinatorTests|ZeroMQTests" 2>&1 | tee .build/test-debug.log || status=$?
    if [ "$status" -ne 0 ]; then
        { echo "==> the debug run failed (exit $status); the failing lines, also in .build/test-debug.log:"
          grep -E "✘|error:|Fatal error|unexpected signal|Exited with|Simultaneous accesses" .build/test-debug.log | grep -v "passed after" | head -60 || true
        } | tee /dev/stderr
    fi
fi
exit "$status"
