# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing, installing torch==2.13.0 first and pinned
# (an unpinned torch pulls a multi-GB CUDA build), then sdlab with its test extras.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sdlab-installed

.PHONY: demo test test-all venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sdlab demo

# pytest exits 5 when every test is deselected by a marker: that is not a failure.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu"; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
