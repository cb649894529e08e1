# mmghost: `make test` and `make demo` work from a fresh clone; both first run the idempotent setup.
# STACKS picks the stacks `make setup/test/test-fast` use: torch213 (.venv) and/or torch21 (.venv-torch21).
STACKS ?= torch213 torch21
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo clean

setup:
	@bash tools/setup_env.sh $(STACKS)

# The whole suite, in both stacks: fast tests and the end-to-end group marked `slow`.
test: setup
	@bash tools/run_tests.sh $(foreach s,$(STACKS),--stack $(s)) $(PYTEST_ARGS)

# Fast tests only, for development.
test-fast: setup
	@bash tools/run_tests.sh $(foreach s,$(STACKS),--stack $(s)) -m "not slow" $(PYTEST_ARGS)

# The main job: make a shapes dataset, train the demo detector on CPU, evaluate COCO mAP, draw predictions.
demo:
	@bash tools/setup_env.sh torch213
	@.venv/bin/python tools/demo.py

clean:
	rm -rf work_dirs .pytest_cache
