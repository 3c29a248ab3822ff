# s2m_ros: the two commands of the README, and their parts.
#   make demo   set up (venv + ROS 2 wheels + colcon build) and run the main job
#   make test   set up and run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTEST_ARGS ?=
# test processes (pytest-xdist): one per core, at most 4 (each gets its own ROS domain, see test/conftest.py)
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
ENV := . tools/env.sh &&

DEMO_OUT ?= demo_out

.PHONY: all setup build test fuzz demo selfcheck docs-tables readme-tables models lock clean
all: test

# venv with pinned packages, CMake fix-up, colcon build (idempotent, ~5 s when done)
setup build:
	@tools/bootstrap.sh

test: build
	@$(ENV) pytest -ra -n $(TEST_WORKERS) $(PYTEST_ARGS)

# both nodes fuzzed with random messages for FUZZ_SECONDS each (the default test run: 20 s each)
FUZZ_SECONDS ?= 600
fuzz: build
	@$(ENV) S2M_FUZZ_SECONDS=$(FUZZ_SECONDS) S2M_TEST_DOMAIN_BASE=$${S2M_TEST_DOMAIN_BASE:-98} \
		pytest -q -p no:xdist -s test/test_fuzz_nodes.py

# the synthetic apron scenario -> s2m replay (weight-free profile) -> scores vs truth, bird's-eye view,
# overlays in $(DEMO_OUT); then both nodes live over DDS (self-check)
demo: build
	@$(ENV) s2m demo --out $(DEMO_OUT)
	@$(ENV) tools/selfcheck.sh

selfcheck: build
	@$(ENV) tools/selfcheck.sh

# refresh the parameter tables in docs/parameters.md from the nodes' declared parameters
# (readme-tables: the old name, kept as an alias)
docs-tables readme-tables: build
	@$(ENV) python tools/param_tables.py

# ONNX models for the model profiles, into models/ (git-ignored). ESPnet weights: the published
# Cityscapes .pth files (here from ../shared/data); MobileSAM: MOBILESAM_CKPT=mobile_sam.pt, or
# random weights (numerics and speed only: its masks are meaningless) when unset.
WEIGHTS ?= ../shared/data/weights
MOBILESAM_CKPT ?=
models: build
	@mkdir -p models
	@$(ENV) s2m export espnet --weights $(WEIGHTS)/espnet_p2_q8_cityscapes/decoder/espnet_p_2_q_8.pth --out models/espnet.onnx
	@$(ENV) s2m export espnetv2 --weights $(WEIGHTS)/espnetv2_s2.0_cityscapes/espnetv2_s_2.0_city_1024x512.pth --out models/espnetv2.onnx
	@$(ENV) s2m export mobilesam --out-dir models $(if $(MOBILESAM_CKPT),--checkpoint $(MOBILESAM_CKPT),--random-weights)

# re-pin constraints.txt from a fresh resolution of requirements.txt
lock:
	@rm -rf /tmp/s2m-lock && python3.11 -m venv /tmp/s2m-lock \
	&& /tmp/s2m-lock/bin/pip install -q -r requirements.txt \
	&& { echo "# Exact versions for requirements.txt, verified on CPython 3.11 (Debian 12, x86_64), $$(date +%F)."; \
	     echo "# Regenerate: make lock"; /tmp/s2m-lock/bin/pip freeze; } > constraints.txt \
	&& echo "constraints.txt updated"

clean:
	rm -rf build install log .venv $(DEMO_OUT)
