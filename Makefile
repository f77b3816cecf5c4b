# CosmicAI: the commands of the README, and the set-up they share.
#   make serve  set up, build the explorer, then serve it and the API on the bundled real data
#   make test   set up, then run the whole test suite
#   make demo   the command-line tour (import, partition, images, eval, a run)
# Both are idempotent: a second run reuses what the first installed or built.

SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
COSMICAI_DEBUG := $(CARGO_TARGET_DIR)/debug/cosmicai
COSMICAI := $(CARGO_TARGET_DIR)/release/cosmicai
VENV := .venv
PYTHON := $(VENV)/bin/python
DEMO := data/demo

E2E := tests/e2e
TOOLS_PATH := $(HOME)/.cargo/bin:$(PATH)
TRUNK_VERSION := 0.21.14
CARGO_DENY_VERSION := 0.20.2
WASM_BINDGEN_VERSION := $(shell grep -A1 '^name = "wasm-bindgen"$$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')

# Every native crate with every feature (the frontend is built by Trunk, for wasm).
NATIVE_ALL := -p cosmicai-backend -p cosmicai-lambda --features cosmicai-backend/cuda,cosmicai-backend/openblas,cosmicai-lambda/cuda

.PHONY: demo serve test setup deny-setup rust-setup python-setup frontend-setup e2e-setup browser-setup frontend e2e e2e-run fuzz

# The server first, then the explorer in the background while it serves (tools/serve.sh).
serve: rust-setup
	PATH=$(TOOLS_PATH) tools/serve.sh

# The explorer: Trunk builds frontend/ into dist/ (offline: tools installed by frontend-setup).
# Incremental, release: a one-line change in frontend/ rebuilds in seconds (README,
# "The first `make serve`", times it).
# Its own target directory: cargo locks one per profile (host build scripts included),
# and `make serve` builds the explorer while the server builds.
EXPLORER_CARGO := CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/explorer CARGO_PROFILE_RELEASE_INCREMENTAL=true
frontend: frontend-setup
	$(EXPLORER_CARGO) PATH=$(TOOLS_PATH) trunk build --release

frontend-setup: rust-setup
	@# Trunk's own release profile is fat LTO in one codegen unit (7.4 min here); it only
	@# drives cargo and wasm-bindgen, so it is built plainly (env settings beat its manifest).
	@# Both build in their own target directory: cargo locks a target directory per profile,
	@# and `make serve` installs them while the server builds in the main one.
	@trunk --version 2>/dev/null | grep -q "$(TRUNK_VERSION)" || CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/tools CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install trunk --version $(TRUNK_VERSION) --locked
	@# wasm-bindgen-cli without --locked: its lockfile pins a webpki-roots release the registry lacks.
	@wasm-bindgen --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)" || CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/tools cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

# The browser tests' npm packages (playwright-core, axe-core): serving needs none.
e2e-setup:
	@test -f $(E2E)/node_modules/playwright-core/package.json -a -f $(E2E)/node_modules/axe-core/axe.min.js || (cd $(E2E) && npm ci --no-audit --no-fund)

# Chromium, for the browser tests only: serving never needs it.
browser-setup:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium chromium-driver) || { echo "install Debian's chromium for the browser tests"; exit 1; }

# Browser tests: headless Chromium against a real `cosmicai serve` with the built explorer.
e2e: frontend browser-setup e2e-setup
	cargo build --bin cosmicai
	$(MAKE) e2e-run

e2e-run:
	COSMICAI_BIN=$(COSMICAI_DEBUG) SCREENSHOTS=$(CARGO_TARGET_DIR)/e2e node $(E2E)/explorer.mjs

demo: rust-setup
	cargo build --release --bin cosmicai
	# Made again: the datasets. Kept: the runs made on them since (results/,
	# sweeps/ and cosmicai.sqlite under partitions/).
	rm -rf $(DEMO)/catalog $(DEMO)/real-cutouts $(DEMO)/synthetic-cutouts $(DEMO)/*.png
	rm -f $(DEMO)/partitions/*.safetensors
	$(COSMICAI) catalog import assets/catalogs/sdss17_star_classification.csv.gz assets/catalogs/skyserver_dr14.csv.gz --out $(DEMO)/catalog
	$(COSMICAI) partition --input $(DEMO)/catalog --objects 4096 --out $(DEMO)/partitions
	$(COSMICAI) inspect $(DEMO)/partitions
	$(COSMICAI) ingest --frames assets/fields/2820-3-0122 --detect --out $(DEMO)/real-cutouts
	$(COSMICAI) synth --catalog assets/catalogs/skyserver_dr14.csv.gz --objects 2000 --seed 1 --out $(DEMO)/synthetic-cutouts
	$(COSMICAI) eval --catalog assets/catalogs/sdss17_star_classification.csv.gz --split validation --plot $(DEMO)/photoz-sdss17.png
	$(COSMICAI) eval --catalog assets/catalogs/skyserver_dr14.csv.gz --split validation --plot $(DEMO)/photoz-dr14.png
	$(COSMICAI) run --data $(DEMO)/partitions --world-size 2 --batch-size 512 --estimate
	$(COSMICAI) run --data $(DEMO)/partitions --world-size 2 --batch-size 512
	$(COSMICAI) runs --data $(DEMO)/partitions
	@echo "plots: $(DEMO)/photoz-sdss17.png $(DEMO)/photoz-dr14.png"

test: setup deny-setup
	cargo fmt --all --check
	# Supply chain (deny.toml): licences, duplicate versions, sources. Advisories need the
	# RustSec database from GitHub, which this build machine cannot reach.
	cargo deny check licenses bans sources
	# Lints and docs (broken intra-doc links are errors), with every native feature on: the
	# CUDA backend must keep compiling without a CUDA toolkit (it loads the driver at run time),
	# and the OpenBLAS build without OpenBLAS installed (only linking needs it). Clippy checks
	# as it lints, and both share one feature resolution, so each dependency is checked once.
	cargo clippy -p cosmicai-shared -p cosmicai-model -p cosmicai-engine $(NATIVE_ALL) --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p cosmicai-shared -p cosmicai-model -p cosmicai-engine $(NATIVE_ALL)
	# The shared types and display code go to the browser: they must build for wasm, and
	# the explorer passes the same lints for wasm (Trunk builds it below).
	cargo clippy -p cosmicai-shared -p cosmicai-frontend --target wasm32-unknown-unknown -- -D warnings
	# The explorer is tested in a browser (make e2e), not natively. The AWS tests need
	# the venv's moto and cargo-lambda (python-setup), so here they must not skip.
	# This build also makes the `cosmicai` and `bootstrap` binaries the later steps run,
	# with the same features, so nothing is compiled twice.
	COSMICAI_REQUIRE_AWS_TESTS=1 COSMICAI_TEST_VENV=$(CURDIR)/$(VENV) cargo test --workspace --exclude cosmicai-frontend
	# The CUDA path without a GPU: kernels.cu compiled by NVRTC (PyPI's library, in the
	# venv; the GPU machine's CUDA is 13.0), cuBLAS's arguments against its definition,
	# and the device schedule on the host. The GPU tests in the same binary skip here.
	COSMICAI_REQUIRE_NVRTC=1 LD_LIBRARY_PATH=$$(echo $(CURDIR)/$(VENV)/lib/python3*/site-packages/nvidia/cu13/lib) cargo test -p cosmicai-model --features cuda --lib device
	COSMICAI_BIN=$(COSMICAI_DEBUG) $(PYTHON) -m pytest -q tests/python
	# Coverage-guided fuzzing (cargo-fuzz, pinned nightly), 10 s a target; `make fuzz`
	# alone runs 60 s a target.
	$(MAKE) fuzz FUZZ_SECONDS=10
	# The Lambda handler for arm64 (Graviton, the template's default), cross-compiled with
	# the venv's zig (PyPI's ziglang); checked to be an AArch64 ELF (e_machine 183). A debug
	# build, only to check that it builds: the zip the template deploys is the README's
	# release build ("Scale out on AWS").
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/cargo-lambda lambda build --arm64 -p cosmicai-lambda
	$(PYTHON) -c "import sys; h = open(sys.argv[1], 'rb').read(20); sys.exit(0 if h[:4] == b'\x7fELF' and int.from_bytes(h[18:20], 'little') == 183 else 'not an arm64 binary: ' + sys.argv[1])" $(CARGO_TARGET_DIR)/lambda/bootstrap/bootstrap
	$(MAKE) frontend e2e-run

setup: rust-setup python-setup frontend-setup e2e-setup browser-setup

# Coverage-guided fuzzing: libFuzzer through cargo-fuzz on a pinned nightly, over the
# targets of cosmicai_engine::fuzz, each FUZZ_SECONDS, held to 2 GB. The corpus starts
# from the stable loop's real seeds (run once for 0 s to write them); finds go to
# fuzz/artifacts/TARGET/. `make test` runs it for 10 s a target, after the stable loop
# (engine/tests/fuzz.rs, 3 s a target, part of cargo test).
FUZZ_NIGHTLY := nightly-2026-05-19
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := partition fits fits_bz2 csv csv_gz predictions weights cai_partition stage_events api_bodies
CARGO_FUZZ_VERSION := 0.13.2
fuzz: rust-setup
	rustup toolchain install $(FUZZ_NIGHTLY) --profile minimal
	@cargo fuzz --version 2>/dev/null | grep -q "$(CARGO_FUZZ_VERSION)" || cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked
	COSMICAI_FUZZ_SECONDS=0 cargo test -p cosmicai-engine --test fuzz
	@# The fuzz crate's own lockfile follows the workspace's: a stale one would be
	@# rewritten here, leaving a clean clone changed after `make test`.
	@cargo metadata --manifest-path fuzz/Cargo.toml --locked --format-version 1 > /dev/null || { echo "fuzz/Cargo.lock is stale: run 'cargo metadata --manifest-path fuzz/Cargo.toml --format-version 1 > /dev/null' and commit it"; exit 1; }
	cargo +$(FUZZ_NIGHTLY) fuzz build
	@for t in $(FUZZ_TARGETS); do \
	  log=$(CARGO_TARGET_DIR)/fuzz-$$t.log; \
	  cargo +$(FUZZ_NIGHTLY) fuzz run $$t $(CURDIR)/target/fuzz-corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 >$$log 2>&1; \
	  status=$$?; \
	  echo "fuzz $$t: $$(grep -o 'stat::number_of_executed_units: *[0-9]*' $$log | grep -o '[0-9]*$$') executions in $(FUZZ_SECONDS) s, corpus $$(ls $(CURDIR)/target/fuzz-corpus/$$t | wc -l) inputs"; \
	  if [ $$status -ne 0 ]; then tail -n 40 $$log; echo "fuzz $$t failed: its input is in fuzz/artifacts/$$t/"; exit 1; fi; \
	done

deny-setup:
	@cargo deny --version 2>/dev/null | grep -q "$(CARGO_DENY_VERSION)" || cargo install cargo-deny --version $(CARGO_DENY_VERSION) --locked

# The toolchain itself comes from rustup (rust-toolchain.toml pins it).
rust-setup:
	@command -v cargo >/dev/null || { echo "install Rust with rustup first: https://rustup.rs"; exit 1; }
	rustup target add wasm32-unknown-unknown aarch64-unknown-linux-gnu
	cargo fetch --locked

# A virtual environment for the Python-side tests (format interoperability, the API
# schema) and the AWS tests' servers: moto, cfn-lint, cargo-lambda (all pinned).
python-setup: $(VENV)/.installed

$(VENV)/.installed: tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r tests/python/requirements.txt
	touch $@
