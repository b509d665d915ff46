#!/usr/bin/env bash
# The first command a new user runs. Until collection lands it installs the Debian packages,
# builds actcluster in release mode and prints what this host offers.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/common.sh

ensure_packages
echo "==> building actcluster (release)"
swift build -c release --product actcluster
binary="$(swift build -c release --show-bin-path)/actcluster"
echo "==> $binary version"
"$binary" version
echo
echo "actcluster is built at $binary"
