# The two commands of the README, and a few more for developers.
.PHONY: demo test test-all lint compose-test

# Set up a fresh machine, make a sample video with a real face, run the whole pipeline on it,
# then grade the report against the sample's scripted truth (each stretch found or missed).
DEMO_REPORTS ?= reports
demo:
	./scripts/setup.sh
	.venv/bin/engagement make-sample --out sample.avi
	.venv/bin/engagement run --source sample.avi --report-dir $(DEMO_REPORTS)
	.venv/bin/engagement grade $(DEMO_REPORTS) sample.truth.json

# Set up, lint, type-check ([tool.mypy] in pyproject.toml), then the test suite (slow tests
# excluded; `make test-all` runs them too).
test:
	./scripts/setup.sh
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/pytest -m "not slow"

test-all:
	./scripts/setup.sh
	.venv/bin/pytest -m "slow or not slow"

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

# The stack of compose/docker-compose.yml up for real in podman (monitoring profile), checked end
# to end, then down -v: engine, base image and builds as needed (cached), one line per check.
compose-test:
	./scripts/setup.sh
	./scripts/compose-test.sh
