# Every target bootstraps .venv itself, so a fresh clone needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-cluster test e2e lint fmt proto bench clean

# The product (editable, with the dev tools), then the devstack: a separate dev distribution
# (dev/) that gives `kv-devstack`. Two steps, so re-installing the product into an older .venv
# can never remove the devstack's command after it was installed.
$(STAMP): pyproject.toml dev/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e ./dev
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(NS) $(BIN)/python -m devstack.demo

# The seed pod on a real local cluster (kubelet, containerd; needs root and the k8s binaries).
demo-cluster: $(STAMP)
	$(NS) $(BIN)/python -m devstack.demo --cluster

# As root, the suite runs in a private mount namespace so its real tmpfs mounts never reach the host.
NS := $(shell [ "$$(id -u)" = 0 ] && command -v unshare >/dev/null && echo unshare -m --propagation private)

test: $(STAMP)
	$(NS) $(BIN)/python -m pytest -q

# The real-cluster tier alone (tests/e2e skips itself, with the reason, without the binaries).
e2e: $(STAMP)
	$(NS) $(BIN)/python -m pytest -q tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/mypy --strict --scripts-are-modules 'flexvolume/azure~kv/kv'

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerates the committed protobuf code; tests/csi/test_proto_fresh.py fails when it is stale.
proto: $(STAMP)
	$(BIN)/python -m tools.protogen

bench: $(STAMP)
	$(NS) $(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
