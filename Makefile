# The two commands: `make demo` (run the whole lakehouse once) and `make test`.
# Everything else installs itself on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed
SCALE  ?= 1

.PHONY: install demo dev test lint format bench up down status lock clean check-sql

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml scripts/check-prereqs.sh
	@scripts/check-prereqs.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(UV) pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	@$(BIN)/python -m compileall -q -j 0 lakehouse resources bench tests > /dev/null
	$(BIN)/lakehouse prepare
	@touch $@

demo: install  ## load the demo data and run the whole graph once
	$(BIN)/lakehouse demo --scale $(SCALE)

dev: install  ## local stack + Dagster UI on http://127.0.0.1:3000
	$(BIN)/lakehouse dev

test: install lint  ## the test suite (what CI runs)
	$(BIN)/pytest -n 2 --dist loadfile

check-sql: install  ## the gold SQL, compiled for Trino offline and checked (run before deploying)
	$(BIN)/lakehouse check-sql

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.spark_sessions
	$(BIN)/python -m bench.load_time

up: install
	$(BIN)/lakehouse up
down: install
	$(BIN)/lakehouse down
status: install
	$(BIN)/lakehouse status

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 -q -o requirements.lock

clean:
	-$(BIN)/lakehouse down
	rm -rf .lakehouse dbt_project/target
