# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing, installing torch==2.13.0 first and pinned
# (an unpinned torch pulls a multi-GB CUDA build), then sdlab with its test extras, all through
# uv (5 s where pip took 61 s for the rest). uv does not read pip's configuration, so it is
# given the wheel directory pip is configured with (the CPU torch lies there): 16 s where
# `pip install torch` took 71 s. Without such a directory torch comes through pip as before.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sdlab-installed
TORCH_WHEELS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))

.PHONY: demo test test-all venv clean chromium

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(if $(TORCH_WHEELS),$(BIN)/uv pip install -q --python $(BIN)/python --find-links $(TORCH_WHEELS) torch==2.13.0,$(BIN)/python -m pip install -q torch==2.13.0)
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sdlab demo

# The report test renders the page in headless Chromium (Debian's package). Installed when
# missing and apt works (as root, as in CI); otherwise that one test is skipped with the reason.
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }); } || \
	  echo "chromium not installed (needs root and apt): the report's browser test will be skipped"

# pytest exits 5 when every test is deselected by a marker: that is not a failure.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow and not gpu"; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-all: $(STAMP) chromium
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
