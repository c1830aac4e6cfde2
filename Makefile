.PHONY: run test lint bench

run:  ## run the console (web + worker + schedules) with demo checks
	bash scripts/run.sh

test:  ## run the tests on SQLite, and on PostgreSQL + Redis when they answer
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
