# Accord — `make help` lists the targets.
.DEFAULT_GOAL := help
.PHONY: help setup run test lint format i18n bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## install everything the tests need (Debian packages as root, .venv, translations)
	scripts/setup.sh test

run: ## set up and run Accord with demo data on http://127.0.0.1:5000 (SQLite, Huey, no Stripe keys)
	scripts/run.sh

test: ## set up and run the whole suite: lint, unit, integration on SQLite and PostgreSQL, browser
	scripts/test.sh

lint: ## ruff and mypy only
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

format: ## apply ruff's fixes and formatting
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

i18n: ## extract strings into the catalogues (then translate the empty zh_Hans_CN entries)
	.venv/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output --width 100 \
		--project Accord -o translations/messages.pot .
	.venv/bin/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete --width 100
	.venv/bin/pybabel compile -d translations

bench: ## the benchmarks in bench/ (PostgreSQL, gunicorn, wrk); see bench/README.md
	scripts/setup.sh bench
	.venv/bin/python bench/run.py
