# The two commands of the README, and a few more for developers.
.PHONY: demo test test-all lint

# Set up a fresh machine, make a sample video with a real face, run the whole pipeline on it.
demo:
	./scripts/setup.sh
	.venv/bin/engagement make-sample --out sample.avi
	.venv/bin/engagement run --source sample.avi

# Set up, lint, then the test suite (slow tests excluded; `make test-all` runs them too).
test:
	./scripts/setup.sh
	.venv/bin/ruff check .
	.venv/bin/pytest -m "not slow"

test-all:
	./scripts/setup.sh
	.venv/bin/pytest -m "slow or not slow"

lint:
	.venv/bin/ruff check .
