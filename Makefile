# Both targets set up .venv themselves (pip, not uv/poetry: only pip sees the local CPU torch wheel).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	@start=$$(date +%s); \
	$(BIN)/itx run configs/demo.yaml && \
	$(BIN)/itx report runs/demo && \
	echo "demo wall time: $$(( $$(date +%s) - start )) s (sweep + report; set-up excluded)"

test: $(STAMP) lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

lock: $(STAMP)
	{ head -2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable \
	  | sed 's/^torch==\(.*\)+cpu/torch==\1/'; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache
