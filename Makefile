# align: `make run` (set up + run the default job), `make test` (set up + pass the tests)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned and installed first: an unpinned torch pulls several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= 2

.PHONY: install run test test-slow lint clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/align train

# One torch thread per test worker: two 2-thread processes on 2 cores spin-wait (measured here: 10-20x slower).
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check align_cli hydra_plugins tests $(wildcard scripts)

clean:
	rm -rf $(VENV) runs multirun outputs
