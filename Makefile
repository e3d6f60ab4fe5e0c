# Two entry points (README quickstart): `make demo` runs the main job, `make test` the tests.
PYTHON ?= python3
PIP = $(PYTHON) -m pip
RUNS ?= runs

.PHONY: install install-test install-lint demo study test lint clean

install:
	$(PIP) install -q -e .

# spikingjelly is only a test oracle; its requirements pull torchvision, which does not import
# beside a CPU-only torch, so it is installed without dependencies (it needs loguru, in [test]).
install-test: install
	$(PIP) install -q -e ".[test]"
	$(PIP) install -q --no-deps spikingjelly==2.0.0

demo: install
	$(PYTHON) analysis/demo.py --runs $(RUNS) --figures figures

# The full evidence (issues 12, 18 and 20): paired seeds on three benchmarks, each pair on its own
# data, the MNIST-1D population, barriers between minima, STUDY.md.
# STAGE=paired|temporal|population|subsets|connectivity|report runs one stage (each resumes; the
# report is written from whatever exists). The paper's benchmarks on SLURM: docs/cluster.md.
STAGE ?= all
study: install
	$(PYTHON) analysis/study.py --runs runs-study --figures figures --stage $(STAGE)

test: install-test
	$(PYTHON) -m pytest -q

install-lint:
	$(PIP) install -q "ruff>=0.6"

# One formatter and one linter for the whole tree (configured in pyproject.toml).
lint: install-lint
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

clean:
	rm -rf $(RUNS) .pytest_cache
