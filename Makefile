# biounet: `make demo` runs the main job on the shipped sample data, `make test` the tests.
# Both need only Python 3.11+ and make: what else they need they install (Python packages into .venv,
# and as root the few Debian packages listed in scripts/system-packages.sh).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install test test-all demo bench clean

$(PY):
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || sh scripts/system-packages.sh venv
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The benchmarks' peers and references. elasticdeform's wheels are built against NumPy 1:
# build it from source (needs a C compiler and the Python headers).
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt --no-binary elasticdeform -e '.[test,bench]'
	touch $(BENCH_STAMP)

install: $(STAMP)

# The default run on TEST_WORKERS processes (pytest-xdist), then the serial tests alone.
TEST_WORKERS ?= 2
test: $(STAMP)
	@sh scripts/system-packages.sh napari
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m 'not slow and not slurm and not serial'
	$(PY) -m pytest -q -m serial

test-all: $(BENCH_STAMP)
	@sh scripts/system-packages.sh napari
	$(PY) -m pytest -q -m ''

demo: $(STAMP)
	$(PY) -m biounet.demo

# The benchmark suite (about 40 minutes on 2 cores): writes docs/benchmarks.md.
bench: $(BENCH_STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
