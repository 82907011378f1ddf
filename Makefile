# The verbs a developer types. Each target creates .venv and installs the locked dependencies first.
# The deployment guide's npm scripts map onto these (npm run dev -> make dev, npm run health -> make health, ...).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKERS ?= 4
PYTEST_ARGS ?=
DOCKER ?= /usr/bin/docker
COMPOSE ?= docker-compose

.DEFAULT_GOAL := help
.PHONY: help install dev serve start-prod worker mp-sim migrate demo health logs logs-error db-optimize backup restore db-partitions archive unarchive redis-flush test test-sqlite test-deploy \
	lint format bench bench-queue bench-onsale bench-sellout bench-webhooks bench-checkin bench-faults bench-failover bench-outages bench-replicas bench-backup lock local-images certs docker-build docker-up docker-scale deploy docker-down docker-logs clean messages loadtest artillery artillery-quick

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Ticketera needs Python 3.11 or newer, found " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the locked dependencies

dev: $(STAMP) ## Run on the embedded default (SQLite, in-process queue) with reload, demo event, keys printed
	$(BIN)/ticketera dev

serve: $(STAMP) ## Run the service as configured (.env / environment), migrating first
	$(BIN)/ticketera serve

start-prod: $(STAMP) ## Production start: APP_ENV=production, $(WORKERS) workers (npm run start:prod)
	APP_ENV=production $(BIN)/ticketera serve --workers $(WORKERS)

worker: $(STAMP) ## Run the expiry worker (a separate process; several copies are safe)
	$(BIN)/ticketera worker

mp-sim: $(STAMP) ## Run the local MercadoPago simulator on :8090 (make dev starts one itself)
	$(BIN)/ticketera mp-sim

migrate: $(STAMP) ## Apply database migrations
	$(BIN)/ticketera migrate

demo: $(STAMP) ## Load the demo event if it is missing
	$(BIN)/ticketera demo

health: $(STAMP) ## Check a running service's /health (npm run health); URL=http://127.0.0.1:8080 for the stack
	$(BIN)/ticketera health $(if $(URL),--url $(URL),)

logs: $(STAMP) ## Follow the service log (npm run logs)
	$(BIN)/ticketera logs

logs-error: $(STAMP) ## Follow warnings and errors only (npm run logs:error)
	$(BIN)/ticketera logs --errors

db-optimize: $(STAMP) ## Verify/create the performance indexes and ANALYZE (npm run db:optimize)
	$(BIN)/ticketera db optimize

backup: $(STAMP) ## Back up the database DATABASE_URL names, without stopping sales (prints the file)
	$(BIN)/ticketera db backup $(if $(OUTPUT),--output $(OUTPUT),)

restore: $(STAMP) ## Restore FILE=... into the database DATABASE_URL names (FORCE=1 replaces its data)
	@test -n "$(FILE)" || { echo "make restore FILE=path/to/backup.jsonl.gz [FORCE=1]"; exit 2; }
	$(BIN)/ticketera db restore $(FILE) $(if $(filter 1,$(FORCE)),--force,)

db-partitions: $(STAMP) ## Add the next months' partitions, archive and drop those past retention (MariaDB; DRY_RUN=1)
	$(BIN)/ticketera db partitions $(if $(filter 1,$(DRY_RUN)),--dry-run,)

archive: $(STAMP) ## Move a finished EVENT=N out of the database into an archive file (prints the file)
	@test -n "$(EVENT)" || { echo "make archive EVENT=id [FORCE=1]"; exit 2; }
	$(BIN)/ticketera db archive --event $(EVENT) $(if $(filter 1,$(FORCE)),--force,)

unarchive: $(STAMP) ## Bring an archived event back: FILE=path/to/event-N-....jsonl.gz
	@test -n "$(FILE)" || { echo "make unarchive FILE=path/to/archive.jsonl.gz"; exit 2; }
	$(BIN)/ticketera db unarchive $(FILE)

redis-flush: $(STAMP) ## Clear disposable Redis data (rate-limit counters), never waiting rooms (npm run redis:flush)
	$(BIN)/ticketera redis flush

test: $(STAMP) ## Run the whole test suite (SQLite always; MariaDB when reachable, required with CI=true)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-deploy: $(STAMP) ## The Compose stack for real: 3 replicas, nginx, Redis, MariaDB, the simulator (needs Docker)
	$(BIN)/python -m pytest -m docker tests/deploy/test_stack.py $(PYTEST_ARGS)

test-sqlite: $(STAMP) ## Run the tests on SQLite only
	TICKETERA_TEST_BACKENDS=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint and format check), mypy, and the domain graph (import-linter)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/mypy tests benchmarks
	$(BIN)/lint-imports

format: $(STAMP) ## Format and autofix
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

LOCALE_DIR := src/ticketera/web/locale

messages: $(STAMP) ## Extract the pages' messages, update the es/en catalogs, check they compile (then translate the .po)
	$(BIN)/pybabel extract --mapping-file babel.cfg --keywords _ --keywords gettext --keywords ngettext:1,2 \
		--no-location --sort-output --omit-header --width 110 -o $(LOCALE_DIR)/messages.pot .
	$(BIN)/pybabel update --input-file $(LOCALE_DIR)/messages.pot --output-dir $(LOCALE_DIR) --no-fuzzy-matching --width 110 --ignore-obsolete
	@# The pages compile the catalogs in memory when they start (ticketera.web.i18n), so no .mo is kept:
	@# this compiles a copy, to show each catalog compiles and how much of it is translated.
	@tmp=$$(mktemp -d) && cp -r $(LOCALE_DIR)/. $$tmp && $(BIN)/pybabel compile --directory $$tmp --statistics; status=$$?; rm -rf $$tmp; exit $$status

bench: $(STAMP) ## Venue creation and seat-map benchmarks (SQLite, and MariaDB if reachable)
	$(BIN)/python benchmarks/create_venue.py

bench-queue: $(STAMP) ## Waiting-room throughput and latency against a server with Redis
	$(BIN)/python benchmarks/queue.py

bench-onsale: $(STAMP) ## Tickets per second through join -> order (express), on MariaDB and SQLite; then bench-sellout
	$(BIN)/python benchmarks/onsale.py
	$(BIN)/python benchmarks/sellout.py

bench-sellout: $(STAMP) ## A sell-out end to end: 50,000 fans, 10,000 places, paid and ticketed, with the worker (MariaDB)
	$(BIN)/python benchmarks/sellout.py

bench-webhooks: $(STAMP) ## MercadoPago webhook latency at 100 concurrent, and approval -> paid time (SQLite; --mariadb by hand)
	$(BIN)/python benchmarks/webhooks.py

bench-faults: $(STAMP) ## The waiting room's answers while Redis is frozen, then killed, and its recovery
	$(BIN)/python benchmarks/faults.py

bench-failover: $(STAMP) ## A Redis Cluster master killed under joins: the failover window, the answers meanwhile, places kept
	$(BIN)/python benchmarks/failover.py

bench-outages: $(STAMP) ## Buyers and webhooks while MariaDB is frozen, then killed, then MercadoPago fails; how fast it heals
	$(BIN)/python benchmarks/outages.py

bench-replicas: $(STAMP) ## Replica fallback time: a replica lagging, killed, frozen, until the primary serves its reads
	$(BIN)/python benchmarks/replicas.py

bench-backup: $(STAMP) ## db backup and db restore of 100,000 paid orders on MariaDB (--backend sqlite by hand)
	$(BIN)/python benchmarks/backup.py

bench-checkin: $(STAMP) ## Check-ins per second, 20 scanners then rescans, on MariaDB (--sqlite by hand)
	$(BIN)/python benchmarks/checkin.py

# -- Load tests against a running deployment (make dev's by default) ------------------------------
# URL as for `make health` (unset: make dev's address).
TARGET_URL = $(or $(URL),http://127.0.0.1:3000)
SIMULATOR_URL ?= http://127.0.0.1:8090
FANS ?= 200
ARTILLERY_DIR := loadtest/artillery
ARTILLERY_STAMP := $(ARTILLERY_DIR)/node_modules/.installed

loadtest: $(STAMP) ## Simulated fans against URL (make dev's), paying in its simulator; EVENT=, FANS=, ARGS=
	$(BIN)/ticketera loadtest --url $(TARGET_URL) --simulator-url $(SIMULATOR_URL) --fans $(FANS) \
		$(if $(EVENT),--event $(EVENT),) $(ARGS)

# --ignore-scripts: artillery's optional browser engine would download Chromium, which we never use.
$(ARTILLERY_STAMP): $(ARTILLERY_DIR)/package.json $(ARTILLERY_DIR)/package-lock.json
	cd $(ARTILLERY_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

artillery: $(ARTILLERY_STAMP) ## The guide's artillery run tests/load-test.yml against URL (EVENT=1)
	cd $(ARTILLERY_DIR) && npx artillery run --target $(TARGET_URL) --variables '{"eventId": $(or $(EVENT),1)}' \
		../../tests/load-test.yml

artillery-quick: $(ARTILLERY_STAMP) ## The guide's artillery quick --count 100 --num 10 URL/health
	cd $(ARTILLERY_DIR) && npx artillery quick --count 100 --num 10 $(TARGET_URL)/health

lock: ## Re-resolve requirements.lock, then the image's requirements-prod.lock within it (needs uv)
	uv pip compile pyproject.toml --extra dev --extra aiomysql --extra loadtest --universal --python-version 3.11 --generate-hashes -o requirements.lock
	uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -c requirements.lock -o requirements-prod.lock

# -- The Compose stack (the guide's docker:up, docker:logs, deploy) ---------------------------------
# LOCAL_IMAGES=1: stand-ins for the official images, built from Debian's packages (no Docker Hub).
ifeq ($(LOCAL_IMAGES),1)
export PYTHON_IMAGE := ticketera-local/python:latest
export NGINX_IMAGE := ticketera-local/nginx:latest
export REDIS_IMAGE := ticketera-local/redis:latest
export MARIADB_IMAGE := ticketera-local/mariadb:latest
endif
HTTP_PORT ?= 8080

local-images: ## Build the stand-ins for the official images from Debian's packages (debootstrap)
	DOCKER="$(DOCKER)" deploy/local-images/build.sh

certs: ## A self-signed development certificate for nginx (deploy/nginx/certs)
	deploy/dev-certs.sh

docker-build: ## Build the app image (ticketera:latest)
	deploy/stack-env.sh
	@if [ "$(LOCAL_IMAGES)" = 1 ]; then DOCKER="$(DOCKER)" deploy/local-images/build.sh; \
		cp /etc/ssl/certs/ca-certificates.crt deploy/docker/extra-ca/host-ca.pem; fi
	$(COMPOSE) build app

docker-up: docker-build certs ## Start the stack (npm run docker:up): nginx on 127.0.0.1:8080/8443, waits until healthy
	$(COMPOSE) up -d
	@deploy/wait-healthy.sh "http://127.0.0.1:$(HTTP_PORT)/health" 180

docker-scale: docker-build certs ## Start the scaled stack: 3 app replicas behind nginx-lb.conf
	$(COMPOSE) -f docker-compose.yml -f docker-compose.scale.yml up -d
	@deploy/wait-healthy.sh "http://127.0.0.1:$(HTTP_PORT)/health" 180

deploy: certs ## Roll a new version through the scaled stack: build, migrate once, replicas one at a time
	deploy/stack-env.sh
	COMPOSE="$(COMPOSE) -f docker-compose.yml -f docker-compose.scale.yml" DOCKER="$(DOCKER)" deploy/rolling-deploy.sh

docker-down: ## Stop the stack; VOLUMES=1 removes its data too
	$(COMPOSE) -f docker-compose.yml -f docker-compose.scale.yml down --remove-orphans $(if $(filter 1,$(VOLUMES)),--volumes,)

docker-logs: ## Follow the stack's logs (npm run docker:logs)
	$(COMPOSE) logs -f --tail=100

clean: ## Remove the virtual environment and caches (keeps ./data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
