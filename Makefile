# Two commands for a fresh machine:  `make demo` (set up + run the whole pipeline on the toy data)
# and `make test` (set up + run the tests). Both create .venv from requirements*.txt first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test toy clean-demo

setup: $(VENV)/.installed

# --system-site-packages: a torch already installed system-wide (often a large CUDA build) is reused.
$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	touch $@

demo: setup
	$(PY) demo.py

test: setup
	$(PY) -m pytest

toy: setup
	$(PY) data/make_toy.py --out data/toy --seed 0
