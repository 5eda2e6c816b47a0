# The two commands of the README: `make run` and `make test`. Both build .venv from scratch when
# pyproject.toml changes. torch/torchvision are pinned first so pip takes the local wheels.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: run test install dist bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/ssl-studio gui --sample

test: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests

bench: install
	$(PY) bench/run_all.py --quick

dist: install
	$(PY) -m pip install -q build
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) dist build *.egg-info
