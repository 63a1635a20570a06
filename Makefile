# The two commands of the README: `make demo` and `make test`. Both install what they need first.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CONFIG ?= configs/local.toml

.PHONY: all deps configure build test test-all demo clean

all: build

deps:
	@bash scripts/install-deps

$(BUILD_DIR)/build.ninja:
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test except the long labels (chaos, gpu, bench).
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -LE 'chaos|gpu|bench'

test-all: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The main job: an embedded GRPO run (SFT cold start, then GRPO) that visibly learns.
demo: build
	@$(BUILD_DIR)/apps/grpo train --config $(CONFIG) $(ARGS)

clean:
	@rm -rf $(BUILD_DIR)
