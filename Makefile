# mlserve — the two commands that matter:
#   make test            install into .venv and run every offline test
#   make up STACK=dev    pulumi up for a stack (local state backend if you're not logged in)
# and for model authors: make validate, make serve, make bench, make build-model [DATASET=dir]

STACK ?= dev
VENV := .venv
POLICY_VENV := policy/venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)

# Use the logged-in backend if there is one; otherwise keep state in ./.pulumi-state, without
# touching the user's global `pulumi login`.
define PULUMI_BACKEND
if ! command -v pulumi >/dev/null 2>&1; then \
  echo "the pulumi CLI is not installed: https://www.pulumi.com/docs/iac/download-install/" >&2; exit 1; fi; \
if [ -z "$${PULUMI_BACKEND_URL:-}" ] && ! pulumi whoami >/dev/null 2>&1; then \
  mkdir -p .pulumi-state; export PULUMI_BACKEND_URL="file://$(CURDIR)/.pulumi-state"; \
  echo "not logged in to a Pulumi backend: using local state in .pulumi-state" >&2; fi; \
export PULUMI_SKIP_UPDATE_CHECK=true;
endef

.PHONY: test venv policy-venv up preview destroy refresh outputs config-reference versions-table \
	build-model validate serve bench wrk smoke load policy-table clean

$(VENV)/.installed: requirements.txt requirements-dev.txt tests/schemas/package-lock.json
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11+ is required")'
	@command -v npm >/dev/null || { echo "npm is required for the schema tests (Node.js 18+)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	npm ci --prefix tests/schemas --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

venv: $(VENV)/.installed

# The policy pack runs in its own environment (policy/requirements.txt says why).
$(POLICY_VENV)/.installed: policy/requirements.txt
	$(PYTHON) -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/pip install --quiet --disable-pip-version-check -r policy/requirements.txt
	touch $@

policy-venv: $(POLICY_VENV)/.installed

# The tests include a short benchmark, so they need wrk too.
test: $(VENV)/.installed wrk
	$(PY) -m pytest

# up and preview enforce the policy pack (README, "Policy as code"), like the workflows do.
up: $(VENV)/.installed $(POLICY_VENV)/.installed
	@$(PULUMI_BACKEND) pulumi stack select --create $(STACK) && pulumi up --stack $(STACK) --policy-pack policy

preview: $(VENV)/.installed $(POLICY_VENV)/.installed
	@$(PULUMI_BACKEND) pulumi stack select --create $(STACK) && pulumi preview --diff --stack $(STACK) --policy-pack policy

refresh: $(VENV)/.installed
	@$(PULUMI_BACKEND) pulumi refresh --stack $(STACK)

destroy: $(VENV)/.installed
	@$(PULUMI_BACKEND) pulumi destroy --stack $(STACK)

outputs:
	@$(PULUMI_BACKEND) pulumi stack output --stack $(STACK)

# ---- the model repository (see README, "Models") ----
build-model: $(VENV)/.installed
	$(PY) -m tools.models build $(if $(DATASET),--dataset $(DATASET))

validate: $(VENV)/.installed
	$(PY) -m tools.models validate

serve: $(VENV)/.installed
	$(PY) -m tools.models serve

# wrk, the benchmark's native load generator: installed with apt-get (sudo when not root) on
# Debian/Ubuntu; elsewhere install it yourself (e.g. brew install wrk).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { \
	    echo "wrk is required (the benchmark's load generator): install it with your package manager" >&2; exit 1; }; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing wrk with apt-get" >&2; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 || { \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }; \
	  command -v wrk >/dev/null 2>&1 || { echo "wrk: installation failed" >&2; exit 1; }; }

# Interleaved baseline/shipped pairs; README=1 writes the report into README.md ("Performance").
BENCH_PAIRS ?= 5
BENCH_SECONDS ?= 5
bench: $(VENV)/.installed wrk
	$(PY) -m tools.models bench --pairs $(BENCH_PAIRS) --seconds $(BENCH_SECONDS) \
		$(if $(README),--update-readme README.md)

# ---- after `make up` (see README, "Environments") ----
smoke: $(VENV)/.installed
	@$(PULUMI_BACKEND) $(PY) -m tools.smoke --stack $(STACK)

USERS ?= 100
SPAWN ?= 10
DURATION ?= 180s
load: $(VENV)/.installed
	@$(PULUMI_BACKEND) $(PY) -m tools.load --stack $(STACK) --users $(USERS) --spawn $(SPAWN) \
		--duration $(DURATION)

config-reference: $(VENV)/.installed
	$(PY) -m tools.config_reference

versions-table: $(VENV)/.installed
	$(PY) -m tools.versions_table

policy-table: $(VENV)/.installed
	$(PY) -m tools.policy_table

clean:
	rm -rf $(VENV) $(POLICY_VENV) .pytest_cache .hypothesis tests/schemas/node_modules
