# mmghost: `make test` and `make demo` work from a fresh clone; both first run the idempotent setup.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo clean

setup:
	@bash tools/setup_env.sh

# The whole suite: fast tests and the end-to-end group marked `slow` (training, resume, crash, export).
test: setup
	@$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: that is a failure"; fi; exit $$rc

# Fast tests only (a few minutes), for development.
test-fast: setup
	@$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests: that is a failure"; fi; exit $$rc

# The main job: make a shapes dataset, train the demo detector on CPU, evaluate COCO mAP, draw predictions.
demo: setup
	@$(PY) tools/demo.py

clean:
	rm -rf work_dirs .pytest_cache
