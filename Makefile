# Starina: the two commands are `make run` and `make test`.
#
#   make run      boot the default profile under QEMU (Ctrl-C to stop)
#   make test     host tests, in-OS tests on q35 and microvm, end-to-end tests
#   make bench    boot time, IPC, Linux and HTTP figures (scripts/bench)
#   make kernel   build the kernel image only
#   make setup    install what the scripts need (Debian: QEMU, ...)
#   make lint     clippy -D warnings: host crates, and the kernel as it is built
#   make fmt      cargo fmt
#   make clean    cargo clean (also the kernel's target/kernel)
#
# Options for `make run`: PROFILE=default MACHINE=q35 ARGS="--icount ..."
# (ARGS goes to `scripts/starina run` as is).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PROFILE ?= default
MACHINE ?= q35
ARGS ?=

.PHONY: help setup run test bench kernel lint fmt clean

help:
	@sed -n '1,14p' Makefile | sed 's/^# \{0,1\}//'

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
