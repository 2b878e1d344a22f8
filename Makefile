# Everything a newcomer needs, from a fresh clone, with no cloud account:
#   make plan STACK=prod    set up, then show what the prod stack would create (offline, mocked)
#   make test               set up, then run the whole test suite
#   make test-fast          the unit tests only (tests/unit: library and program under mocks)
#   make artifacts STACK=prod   write build/prod/: inventory.json, manifests/, helm/ (offline plan)
#   make validate STACK=prod    plan, then validate the artifacts (schemas, checkov, policy rules)
#   make validate-all           the same for every committed stack (CI)
#   make parity STACK=prod      every app's declared keys against the vault (before pulumi up)
#   make gates STACK=prod GITOPS=../platform-gitops   render each app's PreSync parity gate
#   make bench-apps             plan prod with 1, 10, 100 and 300 generated apps (time and cost per app)
#   make bench                  import floor, each stack's plan against it (cache warm and off), the tests
#   make cost STACK=prod [ARGS=--json]   what the stack costs per month, min..max (make cost ARGS=--all: every stack)
#   make critical-path STACK=prod [SVG=prod.svg]   the longest chain of waits, its estimated time and the floor
#                               (SVG: also draw the dependency graph; needs Graphviz, Debian package graphviz)
#   make urns [UPDATE=1]        compare (or refresh) the committed URN snapshots of every stack
#   make config-reference       regenerate docs/configuration.md from the settings models
#   make promote FROM=dev TO=prod GITOPS=../platform-gitops ARGS="--argocd-url URL --provider gitlab --url URL --project P"
#                               open the merge request that gives prod the digests dev runs (docs/releases.md)
#   make status ARGS="--argocd-url URL" [GITOPS=../platform-gitops]   what runs where (add --json for scripts)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= prod
# checkov's dependencies clash with pulumi's: it lives in a virtualenv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30

.PHONY: setup plan test test-fast lint format bench clean artifacts validate validate-all checkov-setup parity gates bench-apps urns config-reference promote status cost critical-path

# First time: about 2 minutes on 2 cores with a cold pip cache (pip shows its progress).
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "== 1/3 creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "== 2/3 upgrading pip"
	$(PY) -m pip install --progress-bar on --upgrade pip
	@echo "== 3/3 installing requirements-dev.txt (Pulumi SDKs, test and lint tools)"
	$(PY) -m pip install --progress-bar on -r requirements-dev.txt
	@echo "== $(VENV) is ready"
	touch $@

setup: $(VENV)/.installed

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

checkov-setup: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

artifacts: setup
	$(PY) -m offline.plan $(STACK) --out build

# In CI (CI=true) a skipped check (no ../shared/schemas, no checkov) fails instead of warning.
validate: setup checkov-setup
	$(PY) -m offline.validate $(STACK) --out build $(if $(CI),--no-skips)

validate-all: setup checkov-setup
	$(PY) -m offline.validate --all --out build $(if $(CI),--no-skips)

plan: setup
	$(PY) -m offline.plan $(STACK)

test: setup
	$(PY) -m pytest -q -n auto

test-fast: setup
	$(PY) -m pytest -q -n auto tests/unit

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup
	$(PY) scripts/benchmark.py
	$(PY) scripts/bench_cost.py

# Needs SCW_SECRET_KEY (SecretManagerReadOnly) or, with 1Password, op + OP_SERVICE_ACCOUNT_TOKEN.
parity: setup
	$(PY) -m offline.parity $(STACK)

gates: setup
	@test -n "$(GITOPS)" || { echo "make gates needs GITOPS=<checkout of your GitOps repository>, e.g. make gates STACK=prod GITOPS=../platform-gitops" >&2; exit 2; }
	$(PY) -m offline.parity $(STACK) --render-hooks $(GITOPS)

# Both need a live Argo CD (ARGOCD_AUTH_TOKEN: the platform-status account's token); promote also
# the Git host (GITOPS_API_TOKEN). Everything else goes in ARGS (docs/releases.md).
FROM ?= dev
TO   ?= prod
promote: setup
	@test -n "$(GITOPS)" || { echo "make promote needs GITOPS=<clone of your GitOps repository>, e.g. make promote FROM=dev TO=prod GITOPS=../platform-gitops ARGS='--argocd-url https://argocd.example.com --provider gitlab --url https://gitlab.example.com --project acme/platform-gitops'" >&2; exit 2; }
	$(PY) -m ops.promote $(FROM) $(TO) --repo $(GITOPS) $(ARGS)

status: setup
	$(PY) -m ops.status $(if $(GITOPS),--repo $(GITOPS)) $(ARGS)

bench-apps: setup
	$(PY) scripts/bench_apps.py

# List prices excluding VAT, from the plan and scw_platform/data/scaleway.yaml (docs/cost.md); exit 2
# when a line has no price or the maximum exceeds platform:budget. ARGS=--all prices every stack.
cost: setup
	$(PY) -m offline.cost $(if $(filter --all,$(ARGS)),,$(STACK)) $(ARGS)

# Estimated build time from nothing: the critical path over the offline plan (docs/architecture.md,
# "How long a stack takes to build"); figures only, nothing fails on the 10% target.
critical-path: setup
	$(PY) scripts/critical_path.py $(STACK) $(if $(SVG),--svg $(SVG))

# The committed URN snapshots (tests/urns): compare, or refresh after a deliberate rename.
urns: setup
	$(PY) -m offline.urns $(if $(UPDATE),--update)

# docs/configuration.md, from each settings field's docstring (a test fails when it is stale).
config-reference: setup
	$(PY) scripts/config_reference.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
