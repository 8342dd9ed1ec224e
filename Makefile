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

# -rs: every skipped test is listed with its reason (two need root or a second Postgres).
# Three workers on two cores: most tests wait on a daemon, Postgres or the simulator, so three
# finish in about half the time of one (6.5 vs 14 minutes here); each file stays on one worker.
test: install
	.ci/system-tools
	$(BIN)/pytest -q -rs -n 3 --dist loadfile

# The simulator checked against SES's published API models (botocore's ses and sesv2) for every
# operation it implements, and against moto side by side (a few seconds).
.PHONY: conformance
conformance: install
	$(BIN)/pytest -q tests/unit/test_shapes.py tests/integration/test_sim_shapes.py \
		tests/integration/test_sim_conformance.py

lint: install
	$(BIN)/ruff check dispatcher tests bench
	$(BIN)/ruff format --check dispatcher tests bench
	$(BIN)/mypy

# Quick (under five minutes): every benchmark at a small size (bench/run.py lists them), among
# them bench.kill, one of two daemons SIGKILLed at 200/s (issue 19 item 4's must-show).
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run

# Everything, longer: the above at full size (20,000-recipient SIGKILL scenario, 100,000-job queue
# drain, 1,000,000-recipient list, 100k-recipient campaign), plus the simulator's ceiling.
bench-full: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run --full

clean:
	rm -rf $(VENV) .dispatcher bench/results/*.json
