# `make run` and `make test` both start with `setup`: one venv, one pip resolve against constraints.txt,
# and the default data (Debian's dataset-fashion-mnist) where apt can install it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed

.PHONY: setup data browser run test clean

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade-strategy only-if-needed -c constraints.txt -e '.[test,litert,ray]'
	touch $(STAMP)

data:
	@if ls $(DATA_DIR)/train-images-idx3-ubyte* >/dev/null 2>&1; then \
	  echo "data: Fashion-MNIST found in $(DATA_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) && \
	  echo "data: installed Debian's dataset-fashion-mnist into $(DATA_DIR)"; \
	else \
	  echo "data: Fashion-MNIST is not in $(DATA_DIR) and apt-get is not usable here (needs root)."; \
	  echo "      Install Debian's dataset-fashion-mnist, or put the four IDX files in a folder and pass"; \
	  echo "      DATA_DIR=that/folder to make (or --data-dir to edgenas)."; \
	fi

# The report test opens report.html in headless Chromium (Debian's package).
browser:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "browser: chromium found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null)) && \
	  echo "browser: installed Debian's chromium"; \
	else \
	  echo "browser: chromium is missing and apt-get is not usable here (needs root); the report test will fail"; \
	fi

# The main job: a TuNAS search of the MobileNetEdgeTPUV2 space for an edgetpu latency target (quality on
# Fashion-MNIST as a proxy), the winner retrained, evaluated and exported to ONNX, and runs/quickstart/report.html.
run: setup
	$(BIN)/edgenas search --config configs/quickstart.yaml --data-dir $(DATA_DIR) --out runs/quickstart --resume

test: setup browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
