# SPDX-License-Identifier: MIT
#
# The two commands of README.md:
#   make run    install what is missing, build, start vpsd on 127.0.0.1 (Ctrl-C stops it)
#   make test   install what is missing, build, run every test; last line "N passed, N failed"
#
# Others: build, check-format, format, test-asan, test-valgrind, fuzz, bench, bench-NAME, clean.

BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
CONF ?= conf/vps.conf
FUZZ_SECONDS ?= 5
MESON_SETUP = meson setup --wipe

.PHONY: all deps build run test test-unit test-asan test-valgrind fuzz fuzz-build \
        check-format format bench clean deb

all: build

deps:
	@sh packaging/deps.sh

$(BUILD)/build.ninja:
	@meson setup $(BUILD) >/dev/null

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD) >/dev/null || ninja -C $(BUILD)

run: build
	@mkdir -p var
	@echo "vpsd and vsmtpd: starting with $(CONF) (Ctrl-C stops both)"
	@exec sh packaging/run-dev.sh $(BUILD) $(CONF)

# Everything that must pass: unit, golden and integration tests under meson,
# then every fuzz target for FUZZ_SECONDS on its corpus.
test: build fuzz-build
	@sh tests/run-all.sh $(BUILD) $(BUILD_FUZZ) $(FUZZ_SECONDS)

test-unit: build
	@meson test -C $(BUILD) --suite unit --print-errorlogs

$(BUILD_ASAN)/build.ninja:
	@meson setup $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false >/dev/null

test-asan: deps $(BUILD_ASAN)/build.ninja
	@ninja -C $(BUILD_ASAN) >/dev/null
	@meson test -C $(BUILD_ASAN) --setup asan --print-errorlogs

test-valgrind: build
	@meson test -C $(BUILD) --setup valgrind --suite unit --print-errorlogs

$(BUILD_FUZZ)/build.ninja:
	@CC=clang meson setup $(BUILD_FUZZ) -Dfuzzing=true -Db_lundef=false >/dev/null

fuzz-build: deps $(BUILD_FUZZ)/build.ninja
	@ninja -C $(BUILD_FUZZ) >/dev/null || ninja -C $(BUILD_FUZZ)

# Longer fuzzing: make fuzz FUZZ_SECONDS=600
fuzz: fuzz-build
	@sh tests/fuzz/run.sh $(BUILD_FUZZ) $(if $(filter 5,$(FUZZ_SECONDS)),300,$(FUZZ_SECONDS))

check-format:
	@git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

bench: build
	@sh bench/run.sh $(BUILD) all

bench-%: build
	@sh bench/run.sh $(BUILD) $*

# The Debian package, built from a copy of the work tree with
# dpkg-buildpackage -us -uc -b (unit tests run; lintian errors fail it):
# $(BUILD)/deb/vps_VERSION_ARCH.deb.  Unchanged tree: reused at once.
deb: deps
	@sh packaging/debian/make-deb.sh $(BUILD)/deb

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
