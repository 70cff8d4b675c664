#!/usr/bin/env bash
# Checks the built packages (scripts/package.sh): for each of arm64 and amd64,
# the control fields, the file list and modes, the conffile, the maintainer
# scripts (what they must do, and that they never touch the config, keys or
# database), that the packaged config and unit are the ones in the tree,
# lintian (no error or warning left: every remaining tag is overridden with
# its reason in packaging/debian/lintian-overrides), and
# `systemd-analyze verify` plus `security` on the unit inside the package.
#
# Usage: scripts/package-check.sh [DEB...]   (default: target/package/*.deb)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
if [ $# -gt 0 ]; then debs=("$@"); else
    debs=("$root/target/package/anpr-edge_${version}-1_arm64.deb" "$root/target/package/anpr-edge_${version}-1_amd64.deb")
fi
failures=0
fail() { echo "  FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "  ok    $*"; }

for deb in "${debs[@]}"; do
    [ -f "$deb" ] || { echo "package-check: $deb missing: run make package" >&2; exit 1; }
    arch="$(dpkg-deb -f "$deb" Architecture)"
    echo "== $(basename "$deb") ($(du -h "$deb" | cut -f1), installed $(dpkg-deb -f "$deb" Installed-Size) KiB)"
    work="$(mktemp -d)"
    dpkg-deb -x "$deb" "$work/root"
    dpkg-deb -e "$deb" "$work/DEBIAN"

    # Control fields.
    [ "$(dpkg-deb -f "$deb" Package)" = anpr-edge ] && ok "Package" || fail "Package field"
    [ "$(dpkg-deb -f "$deb" Version)" = "$version-1" ] && ok "Version $version-1" || fail "Version field"
    deps="$(dpkg-deb -f "$deb" Depends)"
    grep -q 'libc6 (>= ' <<<"$deps" && grep -q libstdc++6 <<<"$deps" && ok "Depends: $deps" || fail "Depends: $deps"

    # Contents: path and mode of every file that must be there.
    listing="$(dpkg-deb -c "$deb")"
    for want in \
        "-rwxr-xr-x root/root ./usr/bin/anpr-edge" \
        "-rw-r--r-- root/root ./usr/lib/anpr-edge/libonnxruntime.so.1.31.1" \
        "-rw-r--r-- root/root ./usr/lib/anpr-edge/clp_det.onnx" \
        "-rw-r--r-- root/root ./usr/lib/anpr-edge/ch_PP-OCRv4_rec_infer.onnx" \
        "-rw-r--r-- root/root ./lib/systemd/system/anpr-edge.service" \
        "-rw-r--r-- root/root ./usr/lib/sysusers.d/anpr-edge.conf" \
        "-rw-r--r-- root/root ./usr/lib/tmpfiles.d/anpr-edge.conf" \
        "-rw-r--r-- root/root ./etc/anpr-edge/config.toml" \
        "-rw-r--r-- root/root ./usr/share/bash-completion/completions/anpr-edge" \
        "-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_anpr-edge" \
        "-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/anpr-edge.fish" \
        "-rw-r--r-- root/root ./usr/share/doc/anpr-edge/copyright" \
        "-rw-r--r-- root/root ./usr/share/doc/anpr-edge/changelog.Debian.gz" \
        "-rw-r--r-- root/root ./usr/share/doc/anpr-edge/install.md"; do
        mode="${want%% *}"; rest="${want#* }"; owner="${rest%% *}"; path="${rest#* }"
        if awk -v m="$mode" -v o="$owner" -v p="$path" '$1==m && $2==o && $6==p {f=1} END {exit !f}' <<<"$listing"; then
            ok "$path $mode"
        else
            fail "$path missing or not $mode $owner"
        fi
    done
    # Nothing of the state directory or keys is shipped: dpkg never owns them,
    # so neither an upgrade nor a removal can touch them.
    grep -q '/var/lib/anpr-edge' <<<"$listing" && fail "the package ships files in /var/lib/anpr-edge" || ok "no file under /var/lib/anpr-edge"
    [ "$(grep -c '^-.* ./etc/' <<<"$listing")" = 1 ] && ok "only config.toml under /etc" || fail "unexpected files under /etc: $(grep '^-.* ./etc/' <<<"$listing")"

    # The binary and runtime are for this architecture.
    case "$arch" in arm64) machine="ARM aarch64" ;; amd64) machine="x86-64" ;; esac
    for f in usr/bin/anpr-edge usr/lib/anpr-edge/libonnxruntime.so.1.31.1; do
        file -b "$work/root/$f" | grep -q "$machine" && ok "$f is $machine" || fail "$f is not $machine: $(file -b "$work/root/$f")"
    done
    # The runtime and models are byte for byte the pinned ones (the daemon
    # refuses anything else at start).
    python3 - "$root/models/manifest.toml" "$work/root/usr/lib/anpr-edge" "$arch" <<'PY' && ok "runtime and models match models/manifest.toml" || fail "runtime or models differ from the manifest"
import hashlib, sys, tomllib
manifest, d, arch = sys.argv[1:]
arch = {"arm64": "aarch64", "amd64": "x86_64"}[arch]
bad = 0
for a in tomllib.load(open(manifest, "rb"))["artifact"]:
    w = [w for w in a["wheel"] if w["arch"] in (arch, "any")][0]
    got = hashlib.sha256(open(f"{d}/{a['file']}", "rb").read()).hexdigest()
    if got != w["file_sha256"]:
        print(f"  {a['file']}: {got} != {w['file_sha256']}", file=sys.stderr); bad = 1
sys.exit(bad)
PY

    # Conffile, packaged config and unit.
    [ "$(cat "$work/DEBIAN/conffiles")" = /etc/anpr-edge/config.toml ] && ok "conffile /etc/anpr-edge/config.toml" || fail "conffiles: $(cat "$work/DEBIAN/conffiles")"
    grep -q '^models_dir = "/usr/lib/anpr-edge"' "$work/root/etc/anpr-edge/config.toml" && ok "default config points at /usr/lib/anpr-edge" || fail "default config models_dir"
    diff <(grep -v '^models_dir' "$root/config.example.toml") <(grep -v '^models_dir' "$work/root/etc/anpr-edge/config.toml") >/dev/null \
        && ok "default config = config.example.toml but for models_dir" || fail "default config differs from config.example.toml"
    cmp -s "$root/systemd/anpr-edge.service" "$work/root/lib/systemd/system/anpr-edge.service" && ok "unit = systemd/anpr-edge.service" || fail "packaged unit differs"
    grep -q '^u anpr-edge ' "$work/root/usr/lib/sysusers.d/anpr-edge.conf" && ok "sysusers: user anpr-edge" || fail "sysusers entry"
    grep -q '^d /var/lib/anpr-edge 0700 anpr-edge anpr-edge' "$work/root/usr/lib/tmpfiles.d/anpr-edge.conf" && ok "tmpfiles: state dir 0700" || fail "tmpfiles entry"
    grep -q 'complete -F .* anpr-edge$' "$work/root/usr/share/bash-completion/completions/anpr-edge" && ok "bash completion" || fail "bash completion"

    # Maintainer scripts: what they do, and what they must never do.
    for s in postinst prerm postrm; do
        [ -x "$work/DEBIAN/$s" ] && sh -n "$work/DEBIAN/$s" && ok "$s present, executable, parses" || fail "$s"
    done
    grep -q 'systemd-sysusers anpr-edge.conf' "$work/DEBIAN/postinst" && ok "postinst makes the user" || fail "postinst: no systemd-sysusers"
    grep -q 'systemd-tmpfiles --create anpr-edge.conf' "$work/DEBIAN/postinst" && ok "postinst makes the state dir" || fail "postinst: no systemd-tmpfiles"
    grep -q 'deb-systemd-helper enable anpr-edge.service' "$work/DEBIAN/postinst" && ok "postinst enables the unit" || fail "postinst: no enable"
    grep -q 'try-restart anpr-edge.service' "$work/DEBIAN/postinst" && ok "postinst restarts a running daemon on upgrade" || fail "postinst: no try-restart"
    grep -q 'deb-systemd-invoke stop anpr-edge.service' "$work/DEBIAN/prerm" && ok "prerm stops the daemon on remove" || fail "prerm: no stop"
    if grep -nE '(rm|mv|cp|chmod|chown|sed|tee|>)[^|]*(/var/lib/anpr-edge|/etc/anpr-edge)' "$work/DEBIAN/postinst" "$work/DEBIAN/prerm" "$work/DEBIAN/postrm"; then
        fail "a maintainer script writes to the config, keys or database (lines above)"
    else
        ok "no maintainer script writes to /etc/anpr-edge or /var/lib/anpr-edge"
    fi
    # The scripts run as dpkg would run them, in a sandbox PATH where every
    # system tool only records that it was called: the calls per action.
    mkdir -p "$work/fakebin"
    for t in systemd-sysusers systemd-tmpfiles deb-systemd-helper deb-systemd-invoke systemctl; do
        printf '#!/bin/sh\necho "%s $*" >> "%s/calls"\n' "$t" "$work" > "$work/fakebin/$t"; chmod +x "$work/fakebin/$t"
    done
    : > "$work/calls"
    PATH="$work/fakebin:/usr/bin:/bin" sh "$work/DEBIAN/postinst" configure "" >/dev/null
    grep -q '^systemd-sysusers anpr-edge.conf' "$work/calls" && grep -q '^deb-systemd-helper enable\|^deb-systemd-helper update-state' "$work/calls" \
        && ok "postinst configure (fresh install) runs: $(cut -d' ' -f1-2 "$work/calls" | tr '\n' ';')" || fail "postinst configure: $(cat "$work/calls")"
    : > "$work/calls"
    PATH="$work/fakebin:/usr/bin:/bin" sh "$work/DEBIAN/postinst" configure "0.0.9-1" >/dev/null
    grep -q '^systemd-sysusers' "$work/calls" && ok "postinst configure (upgrade) runs: $(cut -d' ' -f1-2 "$work/calls" | tr '\n' ';')" || fail "postinst upgrade: $(cat "$work/calls")"

    # The unit, against the packaged binary's path: verify (with this host's
    # units beside it, for the targets it names), then the score.
    if command -v systemd-analyze >/dev/null; then
        cp -an /lib/systemd/system/. "$work/root/lib/systemd/system/" 2>/dev/null || true
        if out="$(systemd-analyze verify --root="$work/root" "$work/root/lib/systemd/system/anpr-edge.service" 2>&1)" && [ -z "$out" ]; then
            ok "systemd-analyze verify: clean"
        else
            fail "systemd-analyze verify: $out"
        fi
        score="$(systemd-analyze security --offline=yes "$work/root/lib/systemd/system/anpr-edge.service" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: //p')"
        echo "  info  systemd-analyze security: $score"
    else
        echo "  skip  systemd-analyze not installed"
    fi
    rm -rf "$work"
done

echo "== lintian"
if command -v lintian >/dev/null; then
    out="$(lintian --fail-on none "${debs[@]}" 2>&1 || true)"
    if grep -E '^(E|W):' <<<"$out"; then
        fail "lintian errors or warnings (above): fix them, or override with a reason in packaging/debian/lintian-overrides"
    else
        ok "lintian: no error or warning ($(grep -c '^O:' <<<"$(lintian --show-overrides "${debs[@]}" 2>&1)") overridden with reasons)"
    fi
else
    echo "  skip  lintian not installed"
fi

[ "$failures" = 0 ] || { echo "package-check: $failures failure(s)" >&2; exit 1; }
echo "package-check: OK"
