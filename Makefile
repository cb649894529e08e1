# mmghost: `make test` and `make demo` work from a fresh clone; both first run the idempotent setup.
# STACKS picks the stacks `make setup/test/test-fast` use: torch213 (.venv), torch21 (.venv-torch21) and deploy
# (.venv-deploy: mmdeploy with its own onnx/protobuf pins, plus the torch-free .venv-runtime).
STACKS ?= torch213 torch21 deploy
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo demo-deploy clean

setup:
	@bash tools/setup_env.sh $(STACKS)

# The whole suite, in every stack: fast tests and the end-to-end group marked `slow`.
test: setup
	@bash tools/run_tests.sh $(foreach s,$(STACKS),--stack $(s)) $(PYTEST_ARGS)

# Fast tests only, for development (the deploy stack's tests all train or export a model: not fast).
test-fast:
	@bash tools/setup_env.sh $(filter-out deploy,$(STACKS))
	@bash tools/run_tests.sh $(foreach s,$(filter-out deploy,$(STACKS)),--stack $(s)) -m "not slow" $(PYTEST_ARGS)

# The main job: make a shapes dataset, train the demo detector on CPU, evaluate COCO mAP, draw predictions.
demo:
	@bash tools/setup_env.sh torch213
	@.venv/bin/python tools/demo.py

# After `make demo`: export the demo detector end to end with mmdeploy (fp32 and int8), score both ONNX files and
# the checkpoint with mmdet's CocoMetric on the held-out split, and draw predictions in the venv without torch.
DEMO_DIR = work_dirs/demo_ghostnet
DEMO_CONFIG = configs/demo/retinanet_ghostnet_shapes.py
demo-deploy:
	@test -f $(DEMO_DIR)/epoch_12.pth || { echo "run make demo first ($(DEMO_DIR)/epoch_12.pth is missing)"; exit 1; }
	@bash tools/setup_env.sh deploy
	@.venv-deploy/bin/python tools/deploy.py $(DEMO_CONFIG) $(DEMO_DIR)/epoch_12.pth $(DEMO_DIR)/onnx --int8
	@.venv-deploy/bin/python tools/test_onnx.py $(DEMO_CONFIG) $(DEMO_DIR)/onnx --checkpoint $(DEMO_DIR)/epoch_12.pth \
		--out $(DEMO_DIR)/onnx/metrics_fp32.json
	@.venv-deploy/bin/python tools/test_onnx.py $(DEMO_CONFIG) $(DEMO_DIR)/onnx --precision int8 \
		--out $(DEMO_DIR)/onnx/metrics_int8.json
	@.venv-runtime/bin/python tools/infer_onnx.py $(DEMO_DIR)/onnx data/shapes/val/000001.png \
		data/shapes/val/000002.png data/shapes/val/000003.png data/shapes/val/000004.png \
		--out-dir $(DEMO_DIR)/onnx_predictions

clean:
	rm -rf work_dirs .pytest_cache
