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
    echo "==> the tests failed (exit $status); the failing lines, also in .build/test.log:" >&2
    grep -E "✘|error:|Fatal error|unexpected signal|Exited with" .build/test.log | grep -v "passed after" | head -60 >&2 || true
fi
exit "$status"
