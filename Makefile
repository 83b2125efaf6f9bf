# plantstream: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
KAFKA := deploy/local/kafka.sh
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install kafka-install chromium-install toxiproxy-install board-vendor lock up down status test test-unit lint bench demo logs clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# A new services/<name>/ package needs the editable install redone, so its folder counts too.
$(VENV)/.stamp: requirements.lock pyproject.toml $(wildcard services/*/__init__.py)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

install: $(VENV)/.stamp kafka-install chromium-install ## install Python deps from the lock, the Kafka broker jars and Chromium (board tests)

kafka-install:
	@$(KAFKA) install

# Debian's chromium drives the board's browser test (Playwright's own download is unreachable here).
chromium-install:
	@test -x /usr/bin/chromium || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }; }

# The board's chart library, vendored in services/board/static/ (served by the board itself, so a
# factory network needs no CDN). This target re-fetches it from Maven Central's webjar.
UPLOT_VERSION := 1.6.30
board-vendor: ## re-fetch the board's vendored chart library (uPlot) from Maven Central
	@d=$$(mktemp -d) && mvn -q -B dependency:copy -Dartifact=org.webjars.npm:uplot:$(UPLOT_VERSION) \
		-DoutputDirectory=$$d && cd $$d && unzip -q uplot-$(UPLOT_VERSION).jar && \
		w=META-INF/resources/webjars/uplot/$(UPLOT_VERSION) && s=$(CURDIR)/services/board/static && \
		cp $$w/dist/uPlot.iife.min.js $$w/dist/uPlot.min.css $$s/ && cp $$w/LICENSE $$s/uPlot.LICENSE && \
		rm -rf $$d && echo "uPlot $(UPLOT_VERSION) -> services/board/static/"

lock: ## re-resolve requirements.lock from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11 --generate-hashes -q

up: install ## start the broker, create topics, migrate ClickHouse, publish the example registry, start the services
	@$(KAFKA) start
	@$(VENV)/bin/plantstream topics create
	@$(VENV)/bin/plantstream db migrate
	@$(VENV)/bin/plantstream assets apply deploy/local/assets.yaml
	@$(VENV)/bin/plantstream services start

demo: up ## make up, then simulate a factory with faults for a minute and print the summary
	@$(VENV)/bin/plantstream demo

down: ## stop services and the broker
	-@$(VENV)/bin/plantstream services stop 2>/dev/null || true
	@$(KAFKA) stop

status: ## broker, service processes, throughput and lag
	@$(KAFKA) status || true
	@$(VENV)/bin/plantstream services status
	@$(VENV)/bin/plantstream status

logs: ## follow the broker log
	@$(KAFKA) logs -f

lint: $(VENV)/.stamp ## ruff
	$(VENV)/bin/ruff check .

test: install ## the test suite against a real broker and embedded ClickHouse, with the short fault runs (SIGKILL of each service, a frozen copy); the long fault matrix is `make faults`
	$(PY) -m pytest -q -ra --durations=25 -n 2 --dist loadfile -m "not matrix"

TOXIPROXY_VERSION := v2.5.0
TOXIPROXY := .local/bin/toxiproxy-server

# Toxiproxy (network faults between the services and the broker), built from the Go module proxy.
$(TOXIPROXY):
	@mkdir -p $(dir $(TOXIPROXY))
	GOBIN=$(CURDIR)/.local/bin/toxiproxy-build GOFLAGS=-mod=mod go install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	@mv .local/bin/toxiproxy-build/server $(TOXIPROXY) && rmdir .local/bin/toxiproxy-build

toxiproxy-install: $(TOXIPROXY) ## build Toxiproxy (make faults needs it)

faults: install $(TOXIPROXY) ## the fault-injection runs (broker restart, down/up, a frozen copy, a leader broker killed on a 3-broker cluster, network faults through Toxiproxy, copies frozen at each transaction step), then each service's recovery time after a SIGKILL under load
	mkdir -p bench/results && rm -f bench/results/faults.jsonl
	PLANTSTREAM_FAULT_REPORT=$(CURDIR)/bench/results/faults.jsonl $(PY) -m pytest -q -ra -m faults; \
	  rc=$$?; $(PY) bench/fault_report.py bench/results/faults.jsonl; exit $$rc
	$(PY) bench/bench_recovery.py

test-unit: $(VENV)/.stamp ## only tests that need no broker
	$(PY) -m pytest -q -m "not integration"

bench: install ## every benchmark in sequence (< 15 min): figures printed, JSON in bench/results/
	$(PY) bench/run_all.py

clean: ## remove the venv and local data (broker data, embedded ClickHouse)
	rm -rf $(VENV) .local
