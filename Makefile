# The two commands of the README: `make run` and `make test`. Both build .venv from scratch when
# pyproject.toml changes. torch/torchvision are pinned first so pip takes the local wheels.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: run test install dist bundle bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The window needs system libraries pip cannot bring (Qt's xcb plugin): installed here where
# allowed without a password, else one line names the apt-get/dnf/pacman command.
run: install
	$(PY) -m studio.services.doctor --gui-libraries --install
	$(VENV)/bin/ssl-studio gui --sample

test: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests

bench: install
	$(PY) bench/run_all.py --quick

# The wheel and sdist; the wheel carries resources/ (icons, stylesheet; linked as studio/resources)
# as the package data studio/resources.
dist: install
	$(PY) -m pip install -q build
	$(PY) -m build --outdir dist .
	$(PY) -c "import sys, zipfile, glob; w = sorted(glob.glob('dist/*.whl'))[-1]; n = [f for f in zipfile.ZipFile(w).namelist() if f.startswith('studio/resources/')]; print(w, len(n), 'resource files'); sys.exit(0 if any(f.endswith('ssl-studio.svg') for f in n) else 1)"

# The one-folder desktop app (PyInstaller, from the `bundle` extra): dist/ssl-studio/.
bundle: install
	$(PY) -m pip install -q $(TORCH_PIN) -e '.[bundle]'
	$(VENV)/bin/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller packaging/ssl-studio.spec
	QT_QPA_PLATFORM=offscreen dist/ssl-studio/ssl-studio --self-test

clean:
	rm -rf $(VENV) dist build *.egg-info
