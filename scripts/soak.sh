#!/bin/sh
# Longer crash-safety soak: the daemon-SIGKILL test of tests/crash.rs with more runs.
# Usage: scripts/soak.sh [RUNS]   (default 5000)
set -eu
cd "$(dirname "$0")/.."
CRASH_RUNS="${1:-5000}" exec cargo test --release --test crash -- --nocapture sigkill_of_the_daemon_at_random_moments
