# pregate - build with `make`, test with `make test`, run the demo with `make run`.
#
#   make                 optimised build: build/pregate, build/libpregate.a
#   make test            build and run every test (tests/run.sh)
#   make test SANITIZE=1 the same under AddressSanitizer + UBSan (in build-asan/)
#   make run             generate text with the shipped demo model
#   make deps            install the Debian packages the build needs (root)
#
# Kernels are compiled three times over (scalar reference, AVX2, AVX-512),
# each file with its own -m flags; the ISA is picked at run time, so one
# binary runs on any x86-64 CPU.

CC      ?= cc
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
  BUILD  := build-asan
  OPT    := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDSAN  := -fsanitize=address,undefined
else
  BUILD  := build
  OPT    := -O2 -g
  LDSAN  :=
endif

CFLAGS  = -std=c11 -D_GNU_SOURCE $(OPT) -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
          -pthread -Iinclude -Isrc $(EXTRA_CFLAGS)
LDLIBS  = -ljansson -lpcre2-8 -lutf8proc -lm -lpthread
LDFLAGS = -pthread $(LDSAN)

# io_uring for the expert store when liburing is installed (else O_DIRECT pread)
ifneq ($(wildcard /usr/include/liburing.h),)
  CFLAGS += -DPG_HAVE_LIBURING
  LDLIBS += -luring
endif

AVX2_FLAGS   = -mavx2 -mfma -mf16c
AVX512_FLAGS = -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*.c src/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

LIB := $(BUILD)/libpregate.a
BIN := $(BUILD)/pregate

.PHONY: all test run deps deps-check clean bench-kernels
all: $(BIN)

$(BUILD)/src/kernels/avx2.o: EXTRA_CFLAGS += $(AVX2_FLAGS)
$(BUILD)/src/kernels/avx512.o: EXTRA_CFLAGS += $(AVX512_FLAGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# Builds what the tests need, then runs them all; the last line of the output
# is "N passed, N failed, N skipped".
test: deps-check $(BIN) $(TEST_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

DEMO_MODEL  ?= models/demo-moe.gguf
DEMO_PROMPT ?= Elizabeth looked at her sister and said
run: deps-check $(BIN)
	$(BIN) run -m $(DEMO_MODEL) -p "$(DEMO_PROMPT)" -n 120 --temp 0.8 --top-p 0.95 --seed 42

bench-kernels: $(BIN)
	$(BIN) bench-kernels

# Installs missing build dependencies from Debian (needs root / sudo).
deps:
	@sh tools/install_deps.sh

deps-check:
	@sh tools/install_deps.sh --check-or-install

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
