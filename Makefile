# Counterlink: the two commands of the README are `make run` and `make test`.
# Everything else here is a building block of those two.

BUILD_DIR   ?= build/release
ASAN_DIR    ?= build/asan
JOBS        ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CONFIG      ?= config/counterlink.yaml
GENERATOR   := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all bootstrap build build-asan run test test-release test-asan fuzz bench bench-broadcasts format clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@test -f $(BUILD_DIR)/CMakeCache.txt || cmake -S . -B $(BUILD_DIR) $(GENERATOR) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD_DIR) -j $(JOBS)

build-asan: bootstrap
	@test -f $(ASAN_DIR)/CMakeCache.txt || cmake -S . -B $(ASAN_DIR) $(GENERATOR) \
	  -DCMAKE_BUILD_TYPE=Debug -DCOUNTERLINK_SANITIZE=ON
	cmake --build $(ASAN_DIR) -j $(JOBS)

# Starts Counterlink on its embedded default (all roles, data in ./data).
run: build
	$(BUILD_DIR)/counterlink serve --config $(CONFIG) --demo

# Builds and passes every test: the release build's suites, the same suites
# under AddressSanitizer + UndefinedBehaviorSanitizer, and a bounded fuzz run.
test: test-release test-asan fuzz
	@echo "make test: all suites passed"

test-release: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

test-asan: build-asan
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 900

fuzz: bootstrap
	scripts/fuzz $(FUZZ_SECONDS)

bench: build
	bench/compare --counterlink $(BUILD_DIR)/counterlink

# Durable payment broadcasts through the API on SQLite and PostgreSQL, with
# mosquitto and database peers (bench/README.md); writes its section of
# docs/benchmarks.md. For the issue's figures use a Release build:
#   make bench-broadcasts BUILD_DIR=build/h-bench
bench-broadcasts: build
	bench/broadcasts --counterlink $(BUILD_DIR)/counterlink

format:
	git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'fuzz/*.cc' | xargs clang-format -i

clean:
	rm -rf build
