#!/bin/sh
# Runs the status page's browser test (tests/status_browser.rs) in headless
# Chromium: installs Debian's chromium and chromium-driver when missing, then
# runs the test. Screenshots land in test-artifacts/ (git-ignored).
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
if ! command -v chromedriver >/dev/null 2>&1; then
	$SUDO apt-get update -qq
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
[ -f models/cache/clp_det.onnx ] || scripts/fetch-models.sh
cargo test -p anpr-lab --test status_browser -- --nocapture
ls -l test-artifacts/
