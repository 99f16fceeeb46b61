# Two commands do all the set-up: `make demo` (the main job) and `make test` (the tests).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 is the CPU wheel these machines carry; any other pin pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow bench optimum-venv release clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[all]" "$(TORCH_PIN)"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m encoderkit.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q -s

bench: $(STAMP)
	$(BIN)/python -m benchmarks.make_bench

# optimum's ONNX recipe as a benchmark peer (`encoderkit bench --optimum-python .venv-optimum/bin/python`).
# It lives in its own venv: optimum-onnx pins transformers < 4.58, ours is 5. torch is installed
# FIRST, pinned to the CPU wheel on this disk, so optimum's torch requirement does not pull a CUDA build.
OPTIMUM_VENV ?= .venv-optimum
OPTIMUM_STAMP := $(OPTIMUM_VENV)/.installed
$(OPTIMUM_STAMP):
	$(PY) -m venv $(OPTIMUM_VENV) || python3 -m venv $(OPTIMUM_VENV)
	$(OPTIMUM_VENV)/bin/pip install -q --upgrade pip
	$(OPTIMUM_VENV)/bin/pip install -q "$(TORCH_PIN)"
	$(OPTIMUM_VENV)/bin/pip install -q "optimum-onnx[onnxruntime]" "$(TORCH_PIN)"
	touch $(OPTIMUM_STAMP)

optimum-venv: $(OPTIMUM_STAMP)

# The release pipeline (ci/release.py): `make release MODEL=minilm [OUT=release/] [RELEASE_ARGS=...]`
# writes OUT/<model>-<version>/ only when every stage passed.
MODEL ?=
OUT ?= release/
RELEASE_ARGS ?=
release: $(STAMP)
	@test -n "$(MODEL)" || { echo "usage: make release MODEL=<checkpoint|name> [OUT=release/]"; exit 2; }
	PYTHON=$(BIN)/python ci/release.sh "$(MODEL)" --out "$(OUT)" $(RELEASE_ARGS)

clean:
	rm -rf $(VENV) $(OPTIMUM_VENV) build *.egg-info .pytest_cache
