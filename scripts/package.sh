#!/usr/bin/env bash
# Builds the Debian package for one architecture from a staged tree with
# dpkg-deb (no cargo-deb, no network): the binary, ONNX Runtime for that
# architecture and the models (both checked against models/manifest.toml),
# the systemd unit, sysusers.d and tmpfiles.d entries, the default config as a
# conffile, shell completions and the docs.
#
# Usage: scripts/package.sh arm64|amd64 [--no-build]
#
#   --no-build   use the release binary already built (scripts/cross-build.sh)
#
# Writes target/package/anpr-edge_VERSION-1_ARCH.deb and prints its path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deb_arch="${1:?usage: scripts/package.sh arm64|amd64 [--no-build]}"
build=1
[ "${2:-}" = --no-build ] && build=0
case "$deb_arch" in
    arm64) arch=aarch64; strip=aarch64-linux-gnu-strip; objdump=aarch64-linux-gnu-objdump
           bin="$root/target/aarch64-unknown-linux-gnu/release/anpr-edge" ;;
    amd64) arch=x86_64; strip=strip; objdump=objdump
           bin="$root/target/release/anpr-edge" ;;
    *) echo "package: unknown architecture '$deb_arch' (arm64 or amd64)" >&2; exit 2 ;;
esac

# Who answers for the package: $DEBFULLNAME <$DEBEMAIL> as for other Debian
# tools, else the author of the commit it is built from.
if [ -n "${DEBEMAIL:-}" ]; then
    maintainer="${DEBFULLNAME:-anpr-edge maintainers} <$DEBEMAIL>"
else
    maintainer="$(git -C "$root" log -1 --format='%an <%ae>')"
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
debver="$version-1"
out="$root/target/package"
stage="$out/$deb_arch"

# The binary: cross-built for arm64, native for amd64 (on an x86_64 host).
if [ "$build" = 1 ]; then
    bin="$("$root/scripts/cross-build.sh" "$arch" | tail -1)"
fi
[ -x "$bin" ] || { echo "package: no binary at $bin (run scripts/cross-build.sh $arch)" >&2; exit 1; }

# The runtime for this architecture and the models, fetched and sha256-checked.
# Runtime of the host architecture lands in models/cache/, others in
# models/cache/ARCH/ (scripts/fetch-models.sh).
if [ "$arch" = "$(uname -m)" ]; then
    "$root/scripts/fetch-models.sh" >&2
    runtime_dir="$root/models/cache"
else
    "$root/scripts/fetch-models.sh" --arch "$arch" >&2
    runtime_dir="$root/models/cache/$arch"
fi
runtime_file="$(python3 -c 'import sys,tomllib; m=tomllib.load(open(sys.argv[1],"rb")); print(*[a["file"] for a in m["artifact"] if a["role"]=="runtime"])' "$root/models/manifest.toml")"
model_files="$(python3 -c 'import sys,tomllib; m=tomllib.load(open(sys.argv[1],"rb")); print(*[a["file"] for a in m["artifact"] if a["role"]!="runtime"])' "$root/models/manifest.toml")"

rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/anpr-edge" \
    "$stage/lib/systemd/system" "$stage/usr/lib/sysusers.d" "$stage/usr/lib/tmpfiles.d" \
    "$stage/etc/anpr-edge" "$stage/usr/share/doc/anpr-edge" \
    "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/lintian/overrides"

install -m 0755 "$bin" "$stage/usr/bin/anpr-edge"
"$strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/anpr-edge"
install -m 0644 "$runtime_dir/$runtime_file" "$stage/usr/lib/anpr-edge/$runtime_file"
for f in $model_files; do
    install -m 0644 "$root/models/cache/$f" "$stage/usr/lib/anpr-edge/$f"
done

install -m 0644 "$root/systemd/anpr-edge.service" "$stage/lib/systemd/system/anpr-edge.service"
install -m 0644 "$root/packaging/debian/sysusers.conf" "$stage/usr/lib/sysusers.d/anpr-edge.conf"
install -m 0644 "$root/packaging/debian/tmpfiles.conf" "$stage/usr/lib/tmpfiles.d/anpr-edge.conf"
install -m 0644 "$root/packaging/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/anpr-edge"

# The default config: the documented example, with the packaged models folder.
sed -e 's|^models_dir = "models/cache"  |models_dir = "/usr/lib/anpr-edge"|' \
    "$root/config.example.toml" > "$stage/etc/anpr-edge/config.toml"
grep -q '^models_dir = "/usr/lib/anpr-edge"' "$stage/etc/anpr-edge/config.toml" \
    || { echo "package: could not set models_dir in the default config" >&2; exit 1; }
chmod 0644 "$stage/etc/anpr-edge/config.toml"

# Completions do not depend on the architecture: any build of this version
# writes them; prefer the target binary where it runs (qemu-user, binfmt).
host_bin="$bin"
"$host_bin" completions bash >/dev/null 2>&1 || host_bin="$root/target/release/anpr-edge"
[ -x "$host_bin" ] || host_bin="$root/target/debug/anpr-edge"
"$host_bin" completions bash > "$stage/usr/share/bash-completion/completions/anpr-edge"
"$host_bin" completions zsh > "$stage/usr/share/zsh/vendor-completions/_anpr-edge"
"$host_bin" completions fish > "$stage/usr/share/fish/vendor_completions.d/anpr-edge.fish"

doc="$stage/usr/share/doc/anpr-edge"
install -m 0644 "$root/packaging/debian/copyright" "$doc/copyright"
install -m 0644 "$root/README.md" "$doc/"
install -m 0644 "$root/docs/guide/installer.md" "$doc/install.md"
install -m 0644 "$root/config.example.toml" "$doc/config.example.toml"
date_r="$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")"
cat > "$doc/changelog.Debian" <<CHANGELOG
anpr-edge ($debver) bookworm; urgency=medium

  * Release $version: see the project's git history.

 -- $maintainer  $date_r
CHANGELOG
gzip -9n "$doc/changelog.Debian"

install -m 0755 "$root/packaging/debian/postinst" "$root/packaging/debian/prerm" \
    "$root/packaging/debian/postrm" "$stage/DEBIAN/"
echo /etc/anpr-edge/config.toml > "$stage/DEBIAN/conffiles"

# Dependencies from the ELF files themselves: the newest glibc symbol version
# any of them needs, and the C++ runtime ONNX Runtime links against.
glibc="$(for f in "$stage/usr/bin/anpr-edge" "$stage/usr/lib/anpr-edge/$runtime_file"; do
    "$objdump" -T "$f"; done | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
installed_kb="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: anpr-edge
Version: $debver
Architecture: $deb_arch
Maintainer: $maintainer
Installed-Size: $installed_kb
Depends: libc6 (>= $glibc), libgcc-s1, libstdc++6, systemd (>= 247)
Section: misc
Priority: optional
Description: roadside ANPR daemon for zero-emission zone enforcement
 anpr-edge runs on the camera controller: V4L2 cameras in, number plates
 detected and read on the CPU (ONNX Runtime, bundled with the models), the
 zone's signed hit and exemption lists applied, and only violations stored
 and uploaded over TLS to the municipal backend. Non-hits never leave memory.
 .
 The package holds the daemon, its runtime and models, a hardened systemd
 service (Type=notify with a watchdog) and a documented default config.
CONTROL

(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"

deb="$out/anpr-edge_${debver}_${deb_arch}.deb"
# Root-owned files whatever user builds it; xz for the weak uplink.
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
rm -rf "$stage"
echo "$deb"
