# Every target is one line of real commands; README.md explains them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch + torchvision as one pinned pair (CUDA builds on PyPI; they also run on CPU). Extra pip
# arguments, e.g. a CPU-only wheel index, go in TORCH_PIP_ARGS.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
TORCH_PIP_ARGS ?=
# The Label Studio server for the live annotation path (its own environment: Django and ~1 GB), held to the
# versions in constraints-labelstudio.txt (an unpinned sentry-sdk 3 broke its start-up on 2026-12-08).
LABEL_STUDIO_PIN ?= label-studio==1.23.2

.PHONY: setup browser demo test lab labelstudio bench lint constraints clean-outputs

setup: $(VENV)/.installed browser

# Headless Chromium opens a run's index.html in tests (Debian's package; installed when running as root).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } ; } || \
	  echo "chromium is not installed: tests/test_site.py will skip (run: apt-get install chromium)"

# constraints.txt: the tested versions of every other package (`make constraints` rewrites it from .venv).
$(VENV)/.installed: pyproject.toml Makefile constraints.txt
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install $(TORCH_PIP_ARGS) $(TORCH_PIN) && $(BIN)/pip install -c constraints.txt -e ".[dev]" && $(BIN)/python -m ipykernel install --sys-prefix --name editcaption --display-name "EditCaption (.venv)" && touch $@

demo: setup
	$(BIN)/editcaption run --profile demo

test: setup
	$(BIN)/python -m pytest

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

# label-studio-sdk into .venv (the [labelstudio] extra) and a Label Studio server into .venv-labelstudio.
labelstudio: setup
	$(BIN)/pip install -c constraints.txt -e ".[dev,labelstudio]" && $(PYTHON) -m venv .venv-labelstudio && .venv-labelstudio/bin/pip install -c constraints-labelstudio.txt $(LABEL_STUDIO_PIN)

bench: setup
	$(BIN)/python benchmarks/run_all.py

lint: setup
	$(BIN)/ruff check lib tests benchmarks

constraints:
	{ echo "# Tested versions of what make setup installs besides the torch pair; rewritten by make constraints."; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -E '^(torch|torchvision|triton|nvidia-.*|pip|setuptools|wheel)=='; } > constraints.txt

clean-outputs:
	rm -rf outputs
