# The front door: `make demo` runs the whole path on embedded defaults, `make test` the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install demo test lint bench bench-full clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/dispatcher demo

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check dispatcher tests bench
	$(BIN)/ruff format --check dispatcher tests bench
	$(BIN)/mypy

# Quick (a few minutes): throughput vs bare aioboto3, client CPU per call, idle latency.
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.client
	$(BIN)/python -m bench.latency

# Everything, longer: adds SendBulkEmail vs SendEmail, the simulator's ceiling, and the
# 100k-recipient campaign (import, SIGKILL half-way, peak RSS against list size).
bench-full: bench
	$(BIN)/python -m bench.bulk
	$(BIN)/python -m bench.sim_throughput
	$(BIN)/python -m bench.campaign

clean:
	rm -rf $(VENV) .dispatcher bench/results/*.json
