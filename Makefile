# The README's commands. Each bootstraps what it needs: the virtual environment with pinned
# Python packages, and Azurite from package-lock.json. Services are started and stopped by the
# commands themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov lives in its own environment: its dependencies clash with the product's pins.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck infra-scan unit functional bench clean

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

demo: setup
	$(BIN)/python -m devstack.demo \
		$(if $(MAIL),--mail "$(MAIL)") \
		$(if $(COMPANIES),--companies "$(COMPANIES)") \
		$(if $(REPORT),--report "$(REPORT)")

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Static security scan of the Bicep: every failed check must be skipped in the Bicep with a reason.
# --skip-download keeps it offline (no policy metadata from the vendor's service). checkov exits 0
# when it cannot parse a file, so its "Parsing errors" line fails the scan here.
infra-scan: $(CHECKOV_STAMP)
	@out=$$($(CHECKOV_VENV)/bin/checkov --directory infra --framework bicep --quiet --compact \
		--skip-download 2>&1); status=$$?; echo "$$out"; \
	if echo "$$out" | grep -q 'Parsing errors'; then echo 'checkov could not parse infra/'; exit 1; fi; \
	exit $$status

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

functional: setup
	$(BIN)/pytest tests/functional $(PYTEST_ARGS)

test: lint typecheck infra-scan
	$(BIN)/pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .stack .pytest_cache .mypy_cache .ruff_cache
