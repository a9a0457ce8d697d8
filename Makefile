# mlserve — the two commands that matter:
#   make test            install into .venv and run every offline test
#   make up STACK=dev    pulumi up for a stack (local state backend if you're not logged in)
#   (make preflight STACK=dev first: the account's EC2 quotas hold the stack's node pools)
# while editing: make test-fast (graph, config, policy and docs tests), make docs (generated blocks);
# for model authors: make validate, make serve, make bench, make build-model [DATASET=dir]

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

.PHONY: test test-fast lint docs venv policy-venv amtool promtool nginx up preview preflight destroy \
	refresh outputs config-reference versions-table build-model validate serve bench wrk jemalloc \
	smoke load \
	policy-table clean

$(VENV)/.installed: requirements.txt requirements-dev.txt tests/schemas/package-lock.json
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11+ is required")'
	@command -v npm >/dev/null || { echo "npm is required for the schema tests (Node.js 18+)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@# The wheels of requirements.txt alone: tests/test_requirements.py builds the environment a
	@# plain `pulumi up` gets from them, offline.
	rm -rf $(VENV)/wheelhouse
	$(PY) -m pip download --quiet --disable-pip-version-check -r requirements.txt -d $(VENV)/wheelhouse
	npm ci --prefix tests/schemas --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

venv: $(VENV)/.installed

# The policy pack runs in its own environment (policy/requirements.txt says why).
$(POLICY_VENV)/.installed: policy/requirements.txt
	$(PYTHON) -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/pip install --quiet --disable-pip-version-check -r policy/requirements.txt
	touch $@

policy-venv: $(POLICY_VENV)/.installed

# CLIs from Debian packages, unpacked under build/<tool>/ (nothing is installed system-wide);
# without apt the tests that use them say they skipped.
# amtool (prometheus-alertmanager), for the alert-routing test; promtool (prometheus), for the
# GPU-health alert tests (`promtool test rules` evaluates the rules on synthetic series); nginx,
# which serves the cold-start fallback's own configuration in its test.
AMTOOL_DEB := prometheus-alertmanager=0.25.0-1+b4
PROMTOOL_DEB := prometheus=2.42.0+ds-5+deb12u1
NGINX_DEB := nginx=1.22.1-9+deb12u9
AMTOOL := build/amtool/usr/bin/amtool
PROMTOOL := build/promtool/usr/bin/promtool
NGINX := build/nginx/usr/sbin/nginx
$(AMTOOL): DEB = $(AMTOOL_DEB)
$(PROMTOOL): DEB = $(PROMTOOL_DEB)
$(NGINX): DEB = $(NGINX_DEB)
$(AMTOOL) $(PROMTOOL) $(NGINX):
	@tool=$(notdir $@); mkdir -p build/$$tool/deb && cd build/$$tool/deb && rm -f *.deb && \
	  { apt-get download -qq $(DEB) 2>/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download -qq $(DEB); }; } \
	  >/dev/null 2>&1 && dpkg-deb --fsys-tarfile *.deb | \
	  tar -x -C .. ./$(patsubst build/$(notdir $@)/%,%,$@) && \
	  rm -f *.deb || echo "$$tool not available here (no apt): the tests that use it will skip" >&2

amtool:
	@$(MAKE) -s $(AMTOOL) || true

promtool:
	@$(MAKE) -s $(PROMTOOL) || true

nginx:
	@$(MAKE) -s $(NGINX) || true

# Lint and types first (pyproject.toml): ruff (pyflakes, bugbear, imports, simplify) over the whole
# tree, mypy with the pydantic plugin over the program, modelrepo, tools and the policy pack.
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy

# The tests include a short benchmark and serve like `make serve`: they need wrk and jemalloc.
test: $(VENV)/.installed $(POLICY_VENV)/.installed amtool promtool nginx wrk jemalloc lint
	$(PY) -m pytest

# The edit-test loop: each shipped stack's recorded graph, the configuration rules, the policy
# rules and the docs, under a minute on 2 cores. Left out (make test runs them): tests that start
# a server (Triton, an S3 API server, the policy pack over gRPC) or build a virtualenv, and the
# modules that evaluate the program over many variants (rollout contracts across versions, the
# Seldon backend, per-model versions of the repository).
FAST_TESTS := tests/test_docs.py tests/test_main.py tests/test_local_and_existing.py \
	tests/test_workflows.py tests/policy/test_rules.py \
	$(filter-out $(addprefix tests/components/test_,model_upload.py model_repository.py \
	  rollout_contract.py seldon.py seldon_rollout_contract.py), \
	  $(wildcard tests/components/test_*.py))
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not server" $(FAST_TESTS)

# Writes every generated block in place: the configuration reference, the pinned versions, the
# policy table and Pulumi.yaml's key list (tools/docs.py). A test fails while one is stale.
docs: $(VENV)/.installed
	$(PY) -m tools.docs

# up and preview enforce the policy pack (docs/policy.md), like the workflows do.
up: $(VENV)/.installed $(POLICY_VENV)/.installed
	@$(PULUMI_BACKEND) pulumi stack select --create $(STACK) && pulumi up --stack $(STACK) --policy-pack policy

preview: $(VENV)/.installed $(POLICY_VENV)/.installed
	@$(PULUMI_BACKEND) pulumi stack select --create $(STACK) && pulumi preview --diff --stack $(STACK) --policy-pack policy

# Before the first `pulumi up` of a stack (and after growing its pools): the account's EC2 vCPU
# quotas hold what the stack's node pools may launch (docs/gpu-capacity.md, "Quotas").
preflight: $(VENV)/.installed
	$(PY) -m tools.preflight --stack $(STACK)

refresh: $(VENV)/.installed
	@$(PULUMI_BACKEND) pulumi refresh --stack $(STACK)

destroy: $(VENV)/.installed
	@$(PULUMI_BACKEND) pulumi destroy --stack $(STACK)

outputs:
	@$(PULUMI_BACKEND) pulumi stack output --stack $(STACK)

# ---- the model repository (docs/models.md) ----
build-model: $(VENV)/.installed
	$(PY) -m tools.models build $(if $(DATASET),--dataset $(DATASET))

validate: $(VENV)/.installed
	$(PY) -m tools.models validate

serve: $(VENV)/.installed jemalloc
	$(PY) -m tools.models serve

# install_missing(check command, Debian package, what it is for, how to install it elsewhere):
# apt-get (sudo when not root) on Debian/Ubuntu, updating the package lists if needed.
define install_missing
	@$(1) >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { \
	    echo "$(2) is required ($(3)): install it (e.g. $(4))" >&2; exit 1; }; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing $(2) with apt-get" >&2; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null 2>&1 || { \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; }; \
	  $(1) >/dev/null 2>&1 || { echo "$(2): installation failed" >&2; exit 1; }; }
endef

wrk:
	$(call install_missing,command -v wrk,wrk,the benchmark's load generator,brew install wrk)

# jemalloc: the local server's allocator (tools/models/serve.py, SHIPPED_TWIN).
jemalloc: $(VENV)/.installed
	$(call install_missing,$(PY) -c "import ctypes.util as u; assert u.find_library('jemalloc')",libjemalloc2,the local server's allocator,brew install jemalloc)

# Interleaved baseline/shipped pairs; README=1 writes the report into docs/models.md ("Performance").
BENCH_PAIRS ?= 5
BENCH_SECONDS ?= 5
bench: $(VENV)/.installed wrk jemalloc
	$(PY) -m tools.models bench --pairs $(BENCH_PAIRS) --seconds $(BENCH_SECONDS) \
		$(if $(README),--update-readme)

# ---- after `make up` (docs/operations.md, "Smoke and load tests") ----
# The stack's endpoints come from its outputs (the Pulumi CLI); URL=http://host:port [HOST=...]
# points them at any V2 endpoint instead, e.g. `make serve`, with no CLI. URL may be a model's own
# inference URL (the stack's `models.<name>.url`); PATH_PREFIX='/seldon/<namespace>/{model}'
# reaches Seldon's models under a gateway URL.
SMOKE_WAIT ?= 600
TARGET = $(if $(URL),--url $(URL) $(if $(HOST),--host $(HOST)) \
	$(if $(PATH_PREFIX),--path-prefix '$(PATH_PREFIX)'),--stack $(STACK))
smoke: $(VENV)/.installed
	@$(if $(URL),,$(PULUMI_BACKEND)) $(PY) -m tools.smoke $(TARGET) --wait $(SMOKE_WAIT)

USERS ?= 100
SPAWN ?= 10
DURATION ?= 180s
load: $(VENV)/.installed
	@$(if $(URL),,$(PULUMI_BACKEND)) $(PY) -m tools.load $(TARGET) $(if $(MODEL),--model $(MODEL)) \
		--users $(USERS) --spawn $(SPAWN) --duration $(DURATION)

config-reference: $(VENV)/.installed
	$(PY) -m tools.config_reference

versions-table: $(VENV)/.installed
	$(PY) -m tools.versions_table

policy-table: $(VENV)/.installed
	$(PY) -m tools.policy_table

clean:
	rm -rf $(VENV) $(POLICY_VENV) .pytest_cache .hypothesis tests/schemas/node_modules
