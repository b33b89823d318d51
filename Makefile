# The two commands of the README:
#   make demo   installs the runtime and runs the full pipeline on the bundled example image
#   make test   installs everything the tests need and runs them (what .ci/run calls)
# All installation steps live in scripts/install.sh.

PYTHON := .venv/bin/python
EDGESKIN := .venv/bin/edgeskin
PYTEST_ARGS ?=

.PHONY: setup setup-dev setup-train demo test test-wheel test-slow test-arm64 lint bench report report-reference \
	ship-classifier ship-detector ship-card compare-classifiers clean

setup:
	scripts/install.sh runtime

setup-dev:
	scripts/install.sh runtime dev ui train
	scripts/install-browser-test-deps.sh

setup-train:
	scripts/install.sh runtime dev train

demo: setup
	$(EDGESKIN) predict examples/IMD080.jpg --out demo-output
	@echo "Annotated result and JSON report: demo-output/"

test: setup-dev
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

# The wheel as shipped, installed in a fresh venv outside the checkout (part of `make test` too; about 1 min).
test-wheel: setup-dev
	$(PYTHON) -m pytest tests/test_wheel.py $(PYTEST_ARGS)

test-slow: setup-dev
	$(PYTHON) -m pytest -m slow $(PYTEST_ARGS)

# Bit-identical answers on x86 and emulated aarch64 (Pi 4 / Pi 5 CPUs): root, debootstrap, qemu-user;
# about 8 minutes on 2 cores for 50 images (not part of `make test`). ARM64_IMAGES=5 for a quick run.
ARM64_IMAGES ?= 50
test-arm64: setup
	scripts/check-aarch64.sh $(ARM64_IMAGES)

lint:
	$(PYTHON) -m ruff check edgeskin training convert benchmarks tests
	$(PYTHON) -m ruff format --check edgeskin training convert benchmarks tests

bench: setup
	$(EDGESKIN) bench

# The benchmark report, in a folder of its own (float rows need setup-train and the float models; see
# benchmarks/README.md). The committed reference report in docs/benchmarks was measured on the machine it names:
# only report-reference replaces it.
REPORT_DIR ?= artifacts/report
report: setup-train
	$(PYTHON) -m benchmarks.report --out $(REPORT_DIR) --threads 2

report-reference: setup-train
	$(PYTHON) -m benchmarks.report --out docs/benchmarks --threads 2 --reference

# Replacing the shipped models (edgeskin/models) with exported ones: only these targets and --ship do it, and each
# says what it replaced. Exports write to folders of their own (the README's commands use these).
CLASSIFIER_EXPORT ?= artifacts/export/classifier
DETECTOR_EXPORT ?= artifacts/detector/export
CARD_EXPORT ?= artifacts/export/card

ship-classifier:
	$(PYTHON) -m convert.ship $(CLASSIFIER_EXPORT)/edgeskin-mnv2-cls.tflite

ship-detector:
	$(PYTHON) -m convert.ship $(DETECTOR_EXPORT)/edgeskin-yolov5n-det.tflite

ship-card:
	$(PYTHON) -m convert.model_card --out $(CARD_EXPORT) --ship

# Start, or continue, the classifier run training/runs/NAME from its config NAME in training/configs: make train-NAME.
# Stops at the last epoch boundary inside TRAIN_BUDGET seconds (exit status 3: resumable); commit the folder then.
TRAIN_BUDGET ?= 9000
train-%: setup-train
	@if [ -f training/runs/$*/resume/training_metadata.json ]; then \
	  $(PYTHON) -m training.train_classifier --resume training/runs/$* --time-budget $(TRAIN_BUDGET); \
	else \
	  $(PYTHON) -m training.train_classifier --config training/configs/$*.json --out training/runs/$* \
	    --time-budget $(TRAIN_BUDGET); \
	fi

# The classifier ship rule (docs/ship-rule.md) applied: predecessor A (shipped, as deployed), predecessor B (the
# HAM10000-only model of c94c3c2, extracted to a temporary folder; its step-shaped calibration is refused today,
# so its logits are scored) and A's one-view variant as a dry run of the rule; CANDIDATE=path/to/model.tflite adds
# a candidate (CANDIDATE_SPLIT: the split whose train images it trained on). Figures and the decision: $(COMPARE_DIR)/compare.{json,md}.
COMPARE_DIR ?= artifacts/compare
CANDIDATE ?=
CANDIDATE_SPLIT ?= training/runs/classifier/split.json
CANDIDATE_ARG = --model "role=candidate,name=candidate,path=$(CANDIDATE),trained_on=$(CANDIDATE_SPLIT)"
# TEACHER=RUN (a copy of a teacher run after `python -m training.train_classifier --materialize RUN`) adds its
# raw weights (those its per-epoch record scores) as an informational row (float, one view; it never ships).
TEACHER ?=
TEACHER_ARG = --model "role=reference,name=teacher (float; raw weights),path=$(TEACHER),weights=raw,trained_on=$(TEACHER)/split.json"
PREDECESSOR_B_COMMIT := c94c3c2
compare-classifiers: setup-train
	mkdir -p $(COMPARE_DIR)/predecessor-b
	git show $(PREDECESSOR_B_COMMIT):edgeskin/models/edgeskin-mnv2-cls.tflite > $(COMPARE_DIR)/predecessor-b/edgeskin-mnv2-cls.tflite
	git show $(PREDECESSOR_B_COMMIT):edgeskin/models/edgeskin-mnv2-cls.json > $(COMPARE_DIR)/predecessor-b/edgeskin-mnv2-cls.json
	$(PYTHON) -m benchmarks.compare_classifiers \
	  --model "role=predecessor,name=A (shipped),path=edgeskin/models/edgeskin-mnv2-cls.tflite,trained_on=training/runs/classifier/split.json" \
	  --model "role=predecessor,name=B (HAM10000-only; logits),path=$(COMPARE_DIR)/predecessor-b/edgeskin-mnv2-cls.tflite,scores=logits,trained_on=training/runs/classifier-ham7/split.json" \
	  --model "role=dry-run,name=A one view (DRY RUN),path=edgeskin/models/edgeskin-mnv2-cls.tflite,views=1,trained_on=training/runs/classifier/split.json" \
	  $(if $(CANDIDATE),$(CANDIDATE_ARG)) $(if $(TEACHER),$(TEACHER_ARG)) \
	  --json $(COMPARE_DIR)/compare.json --markdown $(COMPARE_DIR)/compare.md

clean:
	rm -rf .venv demo-output .pytest_cache test-artifacts
