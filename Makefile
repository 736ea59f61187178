# Starina: the two commands are `make run` and `make test`.
#
#   make run      boot the default profile under QEMU (Ctrl-] x to stop)
#   make test     host tests, in-OS tests on q35 and microvm, end-to-end tests
#   make bench    boot time, IPC, Linux and HTTP figures (scripts/bench)
#   make profile  count every instruction a profile runs, per function: a table
#                 and a flame graph in target/profile/ (README, "Finding a hot spot")
#   make fuzz     the host fuzz targets for longer (make test runs each briefly),
#                 then the in-OS system-call fuzzer for 10 million calls
#   make kernel   build the kernel image only
#   make setup    install what the scripts need (Debian: QEMU, ...)
#   make lint     clippy -D warnings: host crates, and the kernel as it is built
#   make fmt      cargo fmt
#   make clean    cargo clean (also the kernel's target/kernel)
#
# Options for `make run`: PROFILE=default MACHINE=q35 ARGS="--icount ..."
# (ARGS goes to `scripts/starina run` as is).
# Options for `make profile`: PROFILE=bench (its default) SECONDS=5 and
# ARGS="--skip 1 --top 40 ..." (to `scripts/starina profile`).
# Options for `make fuzz` (each per target): CASES=1000000 or SECONDS=600
# (default 100000 cases), SEED=0x1234 (default: a new one), ONLY=virtqueue
# (only fuzz_virtqueue*). A crash prints its input: keep it as a test.
# The system-call fuzzer (profile fuzz): SYSCALLS=10000000 (the default) and
# the same SEED; ONLY=sysfuzz runs it alone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PROFILE ?= default
MACHINE ?= q35
ARGS ?=

.PHONY: help setup run test bench profile fuzz fuzz-host fuzz-syscalls kernel lint fmt clean

help:
	@sed -n '1,25p' Makefile | sed 's/^# \{0,1\}//'

setup:
	@echo "==> setup: scripts/setup"
	@scripts/setup

run: setup
	@echo "==> run: scripts/starina run --profile $(PROFILE) --machine $(MACHINE) $(ARGS)"
	@scripts/starina run --profile $(PROFILE) --machine $(MACHINE) $(ARGS)

test: setup
	@scripts/test

bench: setup
	@echo "==> bench: scripts/bench"
	@scripts/bench

# Counted under -icount: the guest's clock follows its instructions, so the
# timer fires at the same points of the work as in `make bench`.
PROFILE_NAME := $(if $(filter command line environment,$(origin PROFILE)),$(PROFILE),bench)
profile: setup
	@echo "==> profile: scripts/starina profile --profile $(PROFILE_NAME) --icount --seconds $(or $(SECONDS),5) $(ARGS)"
	@scripts/starina profile --profile $(PROFILE_NAME) --icount --seconds $(or $(SECONDS),5) $(ARGS)

# The fuzz targets are tests named fuzz_* (driver: tests/fuzz_driver.rs),
# built optimized but with overflow checks and debug assertions, in their
# own target directory so the usual builds stay cached.
FUZZ_CRATES := -p starina-vmm -p starina-bridge -p starina -p httpd -p tcpip -p linux -p starina-spec -p starina-kernel
CASES ?=
SECONDS ?=
SEED ?=
ONLY ?=

SYSCALLS ?= 10000000
FUZZ_SEED := $(or $(SEED),$(shell date +%s))

fuzz: $(if $(filter sysfuzz,$(ONLY)),,fuzz-host) $(if $(filter-out sysfuzz,$(ONLY)),,fuzz-syscalls)

fuzz-host:
	@echo "==> fuzz: $(if $(SECONDS),$(SECONDS) s,$(or $(CASES),100000) cases) per target$(if $(ONLY), matching '$(ONLY)')"
	@STARINA_FUZZ_CASES=$(if $(SECONDS),$(CASES),$(or $(CASES),100000)) \
		STARINA_FUZZ_SECONDS=$(SECONDS) \
		STARINA_FUZZ_SEED=$(FUZZ_SEED) \
		CARGO_TARGET_DIR=target/fuzz \
		RUSTFLAGS="-C overflow-checks=on -C debug-assertions=on" \
		cargo test --release --tests $(FUZZ_CRATES) -- fuzz_$(ONLY) --nocapture

# The in-OS system-call fuzzer: the kernel built with the count and seed
# (they override specs/sysfuzz.toml), profile fuzz booted until its watch
# powers off: 0 if no panic, no hang and no leak. On one CPU: the leak check
# is exact there (with two, frees still in flight on the other CPU can show
# as a few bytes). `make test` runs the spec's smaller count
# (tests/tests/sysfuzz.rs).
fuzz-syscalls:
	@echo "==> fuzz: system calls in the OS: $(SYSCALLS) calls, seed $(FUZZ_SEED) (profile fuzz)"
	@STARINA_SYSFUZZ_CALLS=$(SYSCALLS) STARINA_SYSFUZZ_SEED=$(FUZZ_SEED) scripts/build-kernel
	@scripts/starina run --no-build --profile fuzz --machine $(MACHINE) --smp 1 --timeout 3600 \
		|| { echo "==> fuzz: the system-call fuzzer failed; reproduce: make fuzz ONLY=sysfuzz SYSCALLS=$(SYSCALLS) SEED=$(FUZZ_SEED)"; exit 1; }

kernel:
	@scripts/build-kernel

# The kernel is linted with the flags it is built with: `build-kernel --clippy`
# uses the one cargo invocation and RUSTFLAGS in host/src/kernel.rs.
lint:
	@echo "==> lint: cargo clippy (host crates)"
	@cargo clippy --workspace --all-targets --exclude starina-kernel -- -D warnings
	@echo "==> lint: cargo clippy (kernel image)"
	@scripts/starina build-kernel --clippy

# rustfmt.toml uses nightly-only options: use a nightly rustfmt when there is one.
fmt:
	@if cargo +nightly fmt --version >/dev/null 2>&1; then \
		echo "==> fmt: cargo +nightly fmt --all"; cargo +nightly fmt --all; \
	else \
		echo "==> fmt: cargo fmt --all (no nightly rustfmt: nightly-only options are skipped)"; cargo fmt --all; \
	fi

clean:
	@echo "==> clean: cargo clean (target/, including target/kernel)"
	@cargo clean
