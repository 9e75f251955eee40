# specact: every step of the study is a target. `make study` is the whole pipeline.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= default
# CPU machines take the CPU build lying on disk; a GPU VM sets TORCH_SPEC to its CUDA build
# (or to "torch" to keep what is installed). An unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
KERNEL  ?= specact

.PHONY: venv study test smoke clean-runs notebooks-clean help

help:
	@echo "make study [PROFILE=default|smoke|gpu|qwen3|<ablation>]   run a study end to end"
	@echo "make test                                                run the test suite"
	@echo "make venv                                                create $(VENV) and the '$(KERNEL)' kernel"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# bfcl-eval's declared dependencies (vllm clients, SDKs, faiss, ...) are not needed to replay
	# its multi-turn environments; they would also pin numpy 1.26. Install the data + envs only.
	$(PY) -m pip install -q --no-deps "bfcl-eval==2026.3.23"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))"
	touch $@

venv: $(VENV)/.installed

study: venv
	$(PY) -m specact run params/$(PROFILE).yaml $(ARGS)

smoke: venv
	$(PY) -m specact run params/smoke.yaml $(ARGS)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean-runs:  # run outputs only: reports/published/ is in git
	rm -rf runs/ && find reports -mindepth 1 -maxdepth 1 -type d ! -name published -exec rm -rf {} +
