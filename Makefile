# tootstack: the two commands a fresh Debian machine needs are `make setup` and `make test`.
SHELL := /bin/bash
export AWS_DEFAULT_REGION ?= us-east-1
PYTHON ?= python3
APT_PACKAGES := redis-server docker-registry skopeo apache2-utils ruby postgresql ruby-pg ruby-redis
STATE_MACHINES := $(wildcard statemachines/*.asl.json)
# the root and the parts it composes (AWS::Serverless::Application with a local Location)
TEMPLATES := template.yaml $(wildcard templates/*.yaml)
PYTEST := $(PYTHON) -m pytest

.PHONY: setup setup-apt setup-python setup-node test lint unit emulated contract integration rehearse build bench clean

setup: setup-apt setup-python setup-node ## install apt, pip and npm packages

setup-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "apt packages present: $(APT_PACKAGES)"; fi

setup-node: setup-apt ## the node clients of the contract tier (tests/contract), from the committed lockfile
	@command -v npm >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; }
	npm ci --prefix tests/contract/node --no-audit --no-fund --loglevel=error

setup-python:
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps -e .
	# bytecode for the editable install, as pip writes it for what it installs into site-packages (even where
	# PYTHONDONTWRITEBYTECODE keeps imports from writing it): short commands such as `tootstack mirror` start faster
	$(PYTHON) -m compileall -q layers/tootstack dev

test: lint unit emulated contract ## gates, then every test tier but the opt-in integration tier

lint: ## ruff; cfn-lint and checkov on every template file, sam validate --lint on the root; statelint: any finding fails
	ruff check layers dev functions tests bench
	cfn-lint $(TEMPLATES)
	sam validate --lint --template template.yaml
	checkov --quiet --compact --skip-download --framework cloudformation $(addprefix -f ,$(TEMPLATES))
	@if [ -n "$(STATE_MACHINES)" ]; then statelint $(STATE_MACHINES); fi

# The test tiers (tests/README.md). Each runs on its own: `make unit` needs only the pip packages.
unit: ## tests/unit: pure logic, no processes, no moto (a guard fails a test that starts either)
	$(PYTEST) tests/unit

emulated: ## tests/emulated: moto, redis-server, docker-registry, skopeo, ruby, the rehearsal (make setup)
	$(PYTEST) tests/emulated -n 2 --dist loadgroup

contract: ## tests/contract: the stack's container definitions with Mastodon's clients, real PostgreSQL and Redis
	$(PYTEST) tests/contract

integration: ## opt-in, read-only: TOOTSTACK_STACK_NAME=<stack> (and AWS credentials) names a deployed stack
	$(PYTEST) tests/integration

rehearse: ## deploy template.yaml into a local AWS emulation and run every lifecycle stage
	tootstack rehearse --report rehearsal-report.json

build: ## sam build (no Docker needed for python3.11 functions)
	sam build --template template.yaml

bench:
	@for b in bench/*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

clean:
	rm -rf .aws-sam .pytest_cache rehearsal-report.json
