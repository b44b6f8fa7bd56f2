# Two commands on a fresh machine with Python 3.11:
#   make demo   - create .venv, install ddtool, run recipes/quickstart.toml on the embedded digits:
#                 DM, DM + Acc-DD's pool at a fifth of the iterations, random real, side by side
#   make test   - create/reuse .venv, install with the test extra and the example plugin, run pytest
#   make test-isa - the suite again under the CPU kernels other machines run (CI runs both)
#   make docs     - the documentation (docs/, mkdocs.yml) built strict into site/: a broken link fails
PYTHON ?= python3
VENV ?= .venv
STORE ?= .ddtool-demo
BIN := $(VENV)/bin
DDTOOL := $(BIN)/ddtool --store $(STORE)
RECIPE := recipes/quickstart.toml

.PHONY: demo test test-isa docs install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml plugins/ddtool-pixelmmd/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet ./plugins/ddtool-pixelmmd
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(DDTOOL) pretrain --recipe $(RECIPE)
	$(DDTOOL) distill --recipe $(RECIPE) --name quickstart
	# the seed's idea: DM on the pool just trained, each network perturbed (Acc-DD), a fifth of the iterations
	$(DDTOOL) distill --recipe $(RECIPE) --name quickstart-ours --iterations 60 --pool pool/quickstart \
		--set distill.selection=random --set distill.schedule=gaussian
	$(DDTOOL) distill --recipe $(RECIPE) --method random --name quickstart-random
	$(DDTOOL) inspect synthetic/quickstart
	$(DDTOOL) eval synthetic/quickstart synthetic/quickstart-ours synthetic/quickstart-random --recipe $(RECIPE)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# ATen picks its CPU kernels by instruction set, and kernels of other widths sum in other orders:
# run the suite under AVX2 (x86 CPUs without AVX-512) and the portable default kernels, skipping
# the one `make test` already ran natively, so a test that holds only on the CI machine's ISA fails here.
test-isa: $(VENV)/.installed
	@native=$$($(BIN)/python -c "import torch; print(torch.backends.cpu.get_cpu_capability().lower())"); \
	for cap in avx2 default; do \
	  if [ "$$native" = "$$cap" ]; then echo "ATEN_CPU_CAPABILITY=$$cap is this CPU's own: run by make test"; continue; fi; \
	  echo "== ATEN_CPU_CAPABILITY=$$cap (this CPU: $$native)"; \
	  ATEN_CPU_CAPABILITY=$$cap $(BIN)/python -m pytest -q || exit 1; \
	done

# the docs extra (MkDocs) in the same venv; --strict turns every warning (a link to a missing page
# or anchor, a page outside the nav) into a failure
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(STORE) .pytest_cache site
