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

# Quick (a few minutes): throughput vs bare aioboto3, client CPU per call, idle latency, rate
# fidelity at MaxSendRate 14/100/1000, five SIGKILLs during a 5,000-recipient campaign.
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run

# Everything, longer: the above at full size (20,000-recipient SIGKILL scenario), plus
# SendBulkEmail vs SendEmail, the simulator's ceiling and the 100k-recipient campaign.
bench-full: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run --full

clean:
	rm -rf $(VENV) .dispatcher bench/results/*.json
