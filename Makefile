# Two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test install lint screenshots bench clean

# The stamp is rebuilt when pyproject.toml changes, so deps follow the project.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,docker]'
	touch $@

install: $(VENV)/.installed

## Open launch-tui on the embedded store with a demo project, a local queue and an agent.
run: install
	$(BIN)/launch-tui demo

## Run the whole test suite (starts and stops the private Docker daemon it needs).
test: install
	scripts/run-tests.sh

lint: install
	$(BIN)/ruff check core backends tui tests benchmarks scripts
	$(BIN)/lint-imports

## Regenerate screenshots/ from the real app on a seeded demo store.
screenshots: install
	$(BIN)/python scripts/screenshots.py

## Run the store benchmarks (figures in benchmarks/README.md). Each also measures
## PostgreSQL, in throwaway databases, when LAUNCH_TUI_TEST_PG names a server:
## eval "$(scripts/test-services.sh env)" first (or pass --pg-url to a script).
bench: install
	$(BIN)/python -c 'import huey' 2>/dev/null || $(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/claim_throughput.py
	$(BIN)/python benchmarks/dispatch_latency.py
	$(BIN)/python benchmarks/claim_backlog.py
	$(BIN)/python benchmarks/feed_wake.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
