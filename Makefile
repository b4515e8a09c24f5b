# One entry point for people and CI. Every target bootstraps what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap lint test test-unit demo train bench kafka-up kafka-down schema clean \
	security security-code security-deps fuzz images demo-compose lint-delivery

bootstrap:
	@scripts/bootstrap

## lint: ruff (with the security rules), mypy, bandit and the delivery linters, before any test
lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(MAKE) --no-print-directory security-code lint-delivery

# Every shell script the project ships (a sh or bash first line), for shellcheck.
SHELL_SCRIPTS = $(shell git grep -lE '^\#! ?/(usr/)?bin/(env +)?(ba)?sh' -- docker scripts .github/scripts .ci)
## lint-delivery: the Dockerfiles, the workflows (actionlint runs shellcheck on their scripts),
## the shell scripts, the compose file against the Compose Specification, dependabot's config
lint-delivery: bootstrap
	$(VENV)/bin/hadolint --failure-threshold info Dockerfile docker/local/*/Dockerfile
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/actionlint
	$(VENV)/bin/zizmor --offline --no-progress --quiet .github
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)
	$(VENV)/bin/check-jsonschema --schemafile tests/delivery/compose-spec.json docker-compose.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml

## test: the whole suite, integration tests included: they start Kafka and MLflow themselves,
## and the container tests a Docker engine and the images (scripts/containers). Three pytest
## processes on two cores, one test file at a time each, with a local broker apiece: most of
## the suite's time is waiting on brokers, workers and containers (two used 0.85 of a core).
## Files go out in collection order (delivery, integration, then the many short unit files
## that fill the end): xdist's default order, most tests first, left the one-test broker
## restart files, the longest, to start last.
test: lint
	RUMOS_TEST_BROKER=$${RUMOS_TEST_BROKER:-local} $(PY) -m pytest -n 3 --dist loadfile \
		--no-loadscope-reorder --durations=15

test-unit: bootstrap
	$(PY) -m pytest -m "not integration"

## demo: the main job, end to end on this machine, without Docker
demo: bootstrap
	$(PY) -m scripts.demo

train: bootstrap
	$(PY) -m training

bench: bootstrap
	$(PY) -m benchmarks

## images: a container engine and every image docker-compose.yml needs, built on this machine
## (stand-ins for the third-party images where no registry answers): docs/deployment.md
images:
	@scripts/containers

## demo-compose: the demo on the compose stack, on whatever engine `make images` provides:
## 1,000 applications in, their outcomes read from the host, a summary, everything removed
demo-compose: bootstrap
	$(PY) -m devstack.compose demo

kafka-up:
	@scripts/kafka-local start

kafka-down:
	@scripts/kafka-local stop

schema: bootstrap
	$(PY) -m contracts.schema

## security: bandit on the code and pip-audit on the installed dependencies (docs/security.md)
security: security-code security-deps

security-code: bootstrap
	$(PY) -m bandit -q -c pyproject.toml -r contracts training consumer producer monitor devstack

# --strict: a dependency the vulnerability service cannot look up fails the audit instead
# of passing silently. Needs network access to the service (AUDIT_SERVICE=pypi or osv).
AUDIT_SERVICE ?= pypi
security-deps: bootstrap
	$(PY) -m pip_audit --strict --skip-editable --progress-spinner off \
		--vulnerability-service $(AUDIT_SERVICE)

## fuzz: fuzz the worker's decoder for FUZZ_SECONDS (default 300)
FUZZ_SECONDS ?= 300
fuzz: bootstrap
	scripts/fuzz-decoder --seconds $(FUZZ_SECONDS)
