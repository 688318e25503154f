# Two commands for a fresh machine:  `make demo` (set up + run the whole pipeline on the toy data)
# and `make test` (set up + run the tests). Both create .venv from requirements*.txt first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test toy clean-demo

setup: $(VENV)/.installed

# --system-site-packages: a torch already installed system-wide (often a large CUDA build) is reused.
# The package itself is installed editable from code/ (pyproject.toml): `import attngan` and the attngan-*
# console scripts work from any folder, and edits take effect without reinstalling.
$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: setup
	$(PY) demo.py

test: setup
	$(PY) -m pytest

toy: setup
	$(PY) data/make_toy.py --out data/toy --seed 0
