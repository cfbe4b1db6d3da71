# Consentinel — `make help` lists the targets. Every target does its own set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Installs only the missing system packages (apt-get); checks with `command -v`, so it is fast.
INSTALL := deploy/local/install.sh

.PHONY: help system system-demo system-test venv demo test soak faults faults-short test-unit lint typecheck fmt stack-up stack-down stack-status bench bench-quick bench-burst image-lock clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

system: ## Install the missing system packages: Java, Maven, Prometheus, Alertmanager, Node.js, Chromium
	@$(INSTALL) test

# Run on every `make demo`/`make test` (not a stamp), so that a tool removed since is noticed.
system-demo:
	@$(INSTALL) demo

system-test:
	@$(INSTALL) test

$(STAMP): pyproject.toml
	@$(INSTALL) venv
	@echo ">> creating the virtualenv in $(VENV) and installing consentinel[dev] (first run downloads packages)..."
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create the virtualenv and install the project with dev extras

demo: system-demo venv ## Run the main job end to end: stack, topics, schemas, the gate and a scripted story
	@$(BIN)/consentinel stack up
	@$(BIN)/consentinel topics apply
	@$(BIN)/consentinel schemas register
	@$(BIN)/consentinel demo --policy deploy/policy.example.yaml
	@echo ">> Prometheus: http://localhost:9090  (alerts /alerts, targets /targets; config deploy/prometheus/prometheus.yml)"
	@echo ">> Grafana: mount $(CURDIR)/grafana/provisioning at /etc/grafana/provisioning and $(CURDIR)/grafana/dashboards at /var/lib/grafana/dashboards"
	@echo "   e.g. docker compose -f deploy/compose/docker-compose.yml up -d grafana, then http://localhost:3000 (admin/admin)"

test: system-test venv ## Lint, type checks and the whole test suite (starts the local stack if needed)
	@$(BIN)/ruff check streams tests bench
	@$(BIN)/ruff format --check streams tests bench
	@$(BIN)/mypy
	@$(BIN)/pytest || { rc=$$?; if [ $$rc -eq 5 ]; then echo "!! pytest collected no tests (exit 5): that is a failure" >&2; fi; exit $$rc; }

SOAK_RUNS ?= 20
SOAK_REQUESTS ?= 20000
soak: system-test venv ## The gate's crash test SOAK_RUNS times in a row (two SIGKILLs under SOAK_REQUESTS requests each)
	@$(BIN)/consentinel stack up
	@for i in $$(seq 1 $(SOAK_RUNS)); do \
		echo ">> crash run $$i of $(SOAK_RUNS): $(SOAK_REQUESTS) requests"; \
		CONSENTINEL_CRASH_REQUESTS=$(SOAK_REQUESTS) CONSENTINEL_CRASH_RATE=$${SOAK_RATE:-1000} \
			$(BIN)/pytest -q -p no:cacheprovider \
			"tests/integration/test_gate_exactly_once.py::test_sigkill_mid_stream_loses_and_duplicates_nothing" \
			|| { echo "!! crash run $$i of $(SOAK_RUNS) failed" >&2; exit 1; }; \
	done; echo ">> $(SOAK_RUNS) crash runs in a row passed"

faults: system-test venv ## Fault injection on a local three-node cluster: brokers SIGKILLed under load (tests/faults)
	@$(BIN)/consentinel stack up --brokers 3
	@$(BIN)/pytest -m faults -s tests/faults

# The short faults CI runs after `make test`: the whole cluster down 10 s (the single-broker
# outage) and gates joining, draining and crashing under load (the rebalance).
FAULTS_SHORT := whole_cluster_down or gates_join_leave
faults-short: system-test venv ## The short fault tests CI runs: every broker killed 10 s, gates rebalancing under load
	@$(BIN)/consentinel stack up --brokers 3
	@$(BIN)/pytest -m faults -s tests/faults/test_cluster_faults.py -k "$(FAULTS_SHORT)"

.PHONY: bench-restart
RESTART_USERS ?= 1000000,10000000
bench-restart: venv ## A gate SIGKILLed and restarted on its RocksDB state vs a full restore (RESTART_USERS)
	@$(BIN)/consentinel stack up
	@$(BIN)/python -m bench.restart --users $(RESTART_USERS)

test-unit: system-test venv ## Run only the tests that need no broker (some need Chromium or promtool)
	@$(BIN)/pytest -m "not integration and not prometheus"

lint: venv ## ruff lint and format check
	@$(BIN)/ruff check streams tests bench
	@$(BIN)/ruff format --check streams tests bench

fmt: venv ## Format the code with ruff
	@$(BIN)/ruff format streams tests bench
	@$(BIN)/ruff check --fix streams tests bench

typecheck: venv ## mypy (strict) on streams/
	@$(BIN)/mypy

stack-up: system-demo venv ## Start the local Kafka, registry (and Prometheus if installed)
	@$(BIN)/consentinel stack up

stack-down: venv ## Stop what stack-up started
	@$(BIN)/consentinel stack down

stack-status: venv ## Show what is running
	@$(BIN)/consentinel stack status

# BENCH_ARGS passes options to bench.run, e.g. BENCH_ARGS="--baseline HEAD" measures the gate at HEAD
# on the same input in the same run (before/after), or "--only gate,quix_peer".
bench: venv ## Full benchmarks (long); results in bench/results and BENCHMARKS.md
	@$(BIN)/python -m bench.run --full $(BENCH_ARGS)

bench-quick: venv ## Benchmarks in under 10 minutes; results in bench/results and BENCHMARKS.md
	@$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

image-lock: venv ## Re-pin the container image's Python packages (deploy/image/constraints.txt; asks PyPI)
	@$(PY) deploy/image/lock.py

# BURST_ARGS passes options to bench.burst, e.g. BURST_ARGS="--runs 3 --tag try" or
# "--detector-env CONSENTINEL_COMMIT_INTERVAL_MS=100" (results in bench/results/burst-*.json).
bench-burst: venv ## Live burst of issue 19 on the local stack: gate + detector processes, per-hop timeline of 10 runs
	@$(BIN)/python -m bench.burst $(BURST_ARGS)

clean: ## Remove the virtualenv and caches (not the stack's downloads)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
