# Two commands do all the set-up: `make demo` (the main job) and `make test` (the tests).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 is the CPU wheel these machines carry; any other pin pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow bench release clean

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

# The release pipeline (ci/release.py): `make release MODEL=minilm [OUT=release/] [RELEASE_ARGS=...]`
# writes OUT/<model>-<version>/ only when every stage passed.
MODEL ?=
OUT ?= release/
RELEASE_ARGS ?=
release: $(STAMP)
	@test -n "$(MODEL)" || { echo "usage: make release MODEL=<checkpoint|name> [OUT=release/]"; exit 2; }
	PYTHON=$(BIN)/python ci/release.sh "$(MODEL)" --out "$(OUT)" $(RELEASE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
