# Everyday commands. `make install` once, then `make test` / `make lint` / `make format`.
PY ?= .venv/bin/python

.PHONY: install test lint format typecheck check
install:
	python3 -m venv .venv && $(PY) -m pip install -e '.[dev]'

test:
	.venv/bin/pytest

lint:
	.venv/bin/ruff check dhr_workflow tests bench
	.venv/bin/ruff format --check dhr_workflow tests bench

format:
	.venv/bin/ruff format dhr_workflow tests bench
	.venv/bin/ruff check --fix dhr_workflow tests bench

typecheck:
	.venv/bin/mypy

check: lint typecheck test
