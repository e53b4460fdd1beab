# Entry points. Every target installs what it needs first (scripts/bootstrap.sh is idempotent).
PY := .venv/bin/python
## pytest-xdist workers. Twice this 2-core machine's cores: many tests wait on servers and sockets, so more workers
## than cores keep both busy. A test module is one unit of work, and the lifecycle tier is one (tests/conftest.py).
## PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 4
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --no-loadscope-reorder
export CHECKPOINT_DISABLE := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup local synth diff state outputs destroy down serve experiment lint format test test-fast bench clean

setup:
	@bash scripts/bootstrap.sh

## The main job on the embedded local default: emulator up, deploy the `local` stack, show outputs.
local: setup
	$(PY) -m local deploy

synth: setup
	npx cdktf synth

diff: setup
	$(PY) -m local diff

state: setup
	$(PY) -m local state list

outputs: setup
	$(PY) -m local outputs

destroy: setup
	$(PY) -m local destroy

down: setup
	$(PY) -m local down

## Run the application locally (HTTP API -> Lambda-like runtime -> proxy stand-in -> MariaDB).
serve: setup
	$(PY) -m local serve

## The load experiment (db.t2.micro with max_connections 65), direct vs through the proxy (10,000 requests, 100 users).
experiment: setup
	$(PY) -m local experiment

## Lint, format check and import layers (ruff and import-linter, configured in pyproject.toml).
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## Every test (the command CI runs): lint, then all tiers in parallel; the lifecycle tier (one deployment, an upgrade)
## starts first on one worker while the others share the rest.
test: lint
	$(PY) -m pytest $(PYTEST_PARALLEL)

## Lint, then every test but the lifecycle (deploys the stack) and experiment (load runs) tiers.
test-fast: lint
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not lifecycle and not experiment"

bench: setup
	$(PY) bench/bench_synth.py
	$(PY) bench/bench_handler.py

clean:
	rm -rf cdktf.out build .local results terraform.*.tfstate*
