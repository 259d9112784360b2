# UltraChat: `make run` serves on the embedded default, `make test` runs every check.
# The only prerequisite is python3 (3.11+): uv is bootstrapped into .tools/ from PyPI.

PYTHON ?= python3
UV := .tools/bin/uv
RUN := $(UV) run --frozen

.PHONY: install run migrate check lint typecheck test test-fast bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set (it is on the CI
# machine), Python would otherwise compile every module of every process it starts, which
# doubled the start of a server or a CLI command (5 s to import the app instead of 2.5).
.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --compile-bytecode
	$(UV) run --frozen python -m compileall -q src
	@touch $@

install: .venv/.synced

migrate: install
	$(RUN) ultrachat migrate

run: migrate
	$(RUN) ultrachat serve

lint: install
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench

typecheck: install
	$(RUN) mypy

check: lint typecheck

# One pytest worker per core (at most 4): most tests wait on servers, subprocesses and the
# databases, so two workers on two cores cut the suite from about 9 minutes to 5.
test: check
	$(RUN) pytest -q -n auto --maxprocesses=4

test-fast: install
	$(RUN) pytest -q -x

# Needs wrk (apt-get install -y wrk); BACKEND=postgres uses PostgreSQL and Redis on 127.0.0.1.
bench: install
	bash bench/auth_bench.sh $(or $(BACKEND),sqlite)

clean:
	rm -rf .venv .tools .mypy_cache .pytest_cache .ruff_cache
