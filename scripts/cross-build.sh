#!/usr/bin/env bash
# Builds the release binary for the controller (aarch64) without Docker:
# rustup's aarch64-unknown-linux-gnu target and Debian's gcc-aarch64-linux-gnu.
#
# Usage: scripts/cross-build.sh [--deps] [--package NAME] [aarch64|x86_64]   (default aarch64)
#
#   --deps          install what is missing first (rustup target, Debian packages)
#   --package NAME  the workspace package to build (default anpr-edge, the
#                   daemon; anpr-lab for the demo under emulation). One package
#                   a run, so the daemon is never built with the lab's features.
#
# Prints the path of the built binary on its last line. Those who prefer the
# `cross` tool (Docker) find its settings in cross.toml instead.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps=0
arch=aarch64
package=anpr-edge
while [ $# -gt 0 ]; do
    a="$1"; shift
    case "$a" in
        --deps) deps=1 ;;
        --package) package="${1:?--package needs a name}"; shift ;;
        aarch64|arm64) arch=aarch64 ;;
        x86_64|amd64) arch=x86_64 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "cross-build: unknown argument: $a" >&2; exit 2 ;;
    esac
done
target="$arch-unknown-linux-gnu"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo

if [ "$arch" = "$(uname -m)" ]; then
    # Native: nothing to cross; the plain release build (shared with `make build`).
    cargo build --release -p "$package" --manifest-path "$root/Cargo.toml" >&2
    echo "$root/target/release/$package"
    exit 0
fi
[ "$arch" = aarch64 ] || { echo "cross-build: cross builds go to aarch64 only" >&2; exit 2; }

if [ "$deps" = 1 ]; then
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libclang-dev >/dev/null
    fi
fi
command -v aarch64-linux-gnu-gcc >/dev/null || {
    echo "cross-build: aarch64-linux-gnu-gcc missing: apt-get install gcc-aarch64-linux-gnu (or pass --deps)" >&2; exit 1; }

# The C parts (bundled SQLite, ring) and v4l's bindgen must see the aarch64
# sysroot, not the host's headers: bindgen otherwise writes x86_64 struct
# layouts into an aarch64 binary.
sysroot=/usr/aarch64-linux-gnu
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu --sysroot=$sysroot -I$sysroot/include"
export PKG_CONFIG_ALLOW_CROSS=1

cargo build --release -p "$package" --manifest-path "$root/Cargo.toml" --target "$target" >&2
echo "$root/target/$target/release/$package"
