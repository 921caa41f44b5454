# pregate - build with `make`, test with `make test`, run the demo with `make run`.
#
#   make                 optimised build: build/pregate, build/libpregate.a
#   make test            build and run every test (tests/run.sh)
#   make test SANITIZE=1 the same under AddressSanitizer + UBSan (in build-asan/)
#   make run             generate text with the shipped demo model
#   make CUDA=1          the same with the CUDA device (src/cuda/, needs nvcc), in build-cuda/
#   make cuda-emu        the CUDA kernels' test on a host emulation of CUDA (tests/cuemu/)
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

# CUDA=1: the CUDA device (src/cuda/*.cu, compiled by nvcc) joins the
# library, and pg_dev_cuda_new is the real one (-DPG_HAVE_CUDA) instead of
# dev.c's stub. Never on by default: the plain build needs no CUDA toolkit.
CUDA      ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= nvcc
# sm_80 (A100) and sm_90 (H100) machine code, and compute_90 PTX that the
# driver compiles for newer GPUs
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
ifeq ($(CUDA),1)
  ifeq ($(SANITIZE),1)
    $(error CUDA=1 with SANITIZE=1: AddressSanitizer and the CUDA runtime do not mix (the shadow memory ASan protects \
      collides with the address ranges the CUDA driver maps); sanitize the plain build (make test SANITIZE=1) instead)
  endif
  ifeq ($(shell command -v $(NVCC) 2>/dev/null),)
    $(error CUDA=1: '$(NVCC)' not found; install the CUDA toolkit, or give its compiler: \
      make CUDA=1 NVCC=$(CUDA_HOME)/bin/nvcc)
  endif
  BUILD := build-cuda
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

# `pregate serve` (src/server/http.c) when libmicrohttpd is installed; without
# it the build goes on and `serve` says how to get it
HAVE_MHD := $(if $(wildcard /usr/include/microhttpd.h),1,0)
ifeq ($(HAVE_MHD),1)
  CFLAGS += -DPG_HAVE_MICROHTTPD
  LDLIBS += -lmicrohttpd
endif

ifeq ($(CUDA),1)
  CFLAGS    += -DPG_HAVE_CUDA
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
  NVCCFLAGS  = -O2 -std=c++17 -Isrc -Iinclude -DPG_HAVE_CUDA $(CUDA_ARCH) --compiler-options -fPIC,-Wall
endif

AVX2_FLAGS   = -mavx2 -mfma -mf16c
AVX512_FLAGS = -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*.c src/*/*.c))
ifneq ($(HAVE_MHD),1)
  LIB_SRC := $(filter-out src/server/http.c,$(LIB_SRC))
endif
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(CUDA),1)
  CU_OBJ  := $(patsubst %.cu,$(BUILD)/%.o,$(wildcard src/cuda/*.cu))
  LIB_OBJ += $(CU_OBJ)
endif
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

LIB := $(BUILD)/libpregate.a
BIN := $(BUILD)/pregate

.PHONY: all test run deps deps-check clean bench-kernels
all: $(BIN)

$(BUILD)/src/kernels/avx2.o: EXTRA_CFLAGS += $(AVX2_FLAGS)
$(BUILD)/src/kernels/avx2_quants.o: EXTRA_CFLAGS += $(AVX2_FLAGS)
$(BUILD)/src/kernels/avx512.o: EXTRA_CFLAGS += $(AVX512_FLAGS)
$(BUILD)/src/kernels/avx512_quants.o: EXTRA_CFLAGS += $(AVX512_FLAGS)
# the same source with VNNI; its functions run only after a run-time check (avx512.c)
$(BUILD)/src/kernels/avx512vnni_quants.o: EXTRA_CFLAGS += $(AVX512_FLAGS) -mavx512vnni

$(BUILD)/%.o: %.c $(BUILD)/features
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu $(BUILD)/features
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

# The optional libraries found (-DPG_HAVE_...): rewritten only when they
# change, so that installing one (make deps) rebuilds what depends on it.
FEATURES := $(filter -DPG_HAVE_%,$(CFLAGS))
$(BUILD)/features: FORCE
	@mkdir -p $(dir $@)
	@echo '$(FEATURES)' | cmp -s - $@ || echo '$(FEATURES)' > $@
.PHONY: FORCE

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
	rm -rf build build-asan build-cuda build-cuemu build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# ---- the CUDA kernels on the CPU (tests/cuemu/) ----------------------------
#   make cuda-emu   dev_cuda.cu compiled by g++ against a host emulation of the
#                   CUDA runtime (every CUDA thread a fiber, real barriers and
#                   shuffles, cuBLAS by its definition), then tests/test_dev.c
#                   on it: every kernel against the CPU, without a GPU. It says
#                   nothing about concurrency or speed (tools/gpu_check.sh).
CXX   ?= g++
CUEMU := build-cuemu
CUEMU_CXXFLAGS = -std=c++20 -O1 -g -w -Itests/cuemu/include -Isrc -Isrc/cuda -Iinclude -DPG_HAVE_CUDA
.PHONY: cuda-emu
cuda-emu: build/libpregate.a tests/cuemu/emu.cpp tests/cuemu/convert.py src/cuda/dev_cuda.cu src/cuda/cuda_math.h
	@mkdir -p $(CUEMU)
	python3 tests/cuemu/convert.py src/cuda/dev_cuda.cu $(CUEMU)/dev_cuda_emu.cpp
	$(CXX) $(CUEMU_CXXFLAGS) -c $(CUEMU)/dev_cuda_emu.cpp -o $(CUEMU)/dev_cuda_emu.o
	$(CXX) $(CUEMU_CXXFLAGS) -c tests/cuemu/emu.cpp -o $(CUEMU)/emu.o
	$(CC) $(CFLAGS) -DPG_HAVE_CUDA -c src/dev/dev.c -o $(CUEMU)/dev.o
	$(CC) $(CFLAGS) -Itests -c tests/test_dev.c -o $(CUEMU)/test_dev.o
	$(CXX) -o $(CUEMU)/test_dev $(CUEMU)/test_dev.o $(CUEMU)/dev.o $(CUEMU)/dev_cuda_emu.o $(CUEMU)/emu.o \
	    build/libpregate.a $(LDFLAGS) $(LDLIBS)
	PREGATE_TEST_DEV=cuda $(CUEMU)/test_dev

# ---- libFuzzer targets (tests/fuzz/; issue 8) -------------------------------
#   make fuzz-build       build each target with clang into build-fuzz/
#   make fuzz             build, then run each for FUZZ_SECONDS (default 30) on a
#                         copy of its seed corpus; fails if any crash is found
# The library is compiled again with -fsanitize=fuzzer-no-link,address,undefined
# into build-fuzz/obj/ (the normal and SANITIZE=1 builds are not touched).
# Crashing inputs are written to build-fuzz/artifacts/TARGET/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_DIR     := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -O1 -g $(FUZZ_SAN) -Wall -Wno-unused-parameter -Wno-sign-compare \
                -pthread -Iinclude -Isrc $(filter -DPG_HAVE_LIBURING,$(CFLAGS)) $(FUZZ_EXTRA)
FUZZ_TARGETS := fuzz_gguf fuzz_safetensors fuzz_config fuzz_tokenizer_json fuzz_tokenize fuzz_chat fuzz_trace fuzz_predictor \
                fuzz_openai
# The whole library but the HTTP server; the targets link only what they use.
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(filter-out src/server/http.c,$(LIB_SRC)))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)

.PHONY: fuzz fuzz-build
fuzz-build: deps-check $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_DIR)/obj/src/kernels/avx2.o $(FUZZ_DIR)/obj/src/kernels/avx2_quants.o: FUZZ_EXTRA += $(AVX2_FLAGS)
$(FUZZ_DIR)/obj/src/kernels/avx512.o $(FUZZ_DIR)/obj/src/kernels/avx512_quants.o: FUZZ_EXTRA += $(AVX512_FLAGS)
$(FUZZ_DIR)/obj/src/kernels/avx512vnni_quants.o: FUZZ_EXTRA += $(AVX512_FLAGS) -mavx512vnni

$(FUZZ_DIR)/libpregate-fuzz.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libpregate-fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_DIR)/libpregate-fuzz.a $(LDLIBS)

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    rm -rf $(FUZZ_DIR)/corpus/$$t; mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t; \
	    cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus/$$t/ 2>/dev/null || true; \
	    dict=""; [ -f tests/fuzz/$${t#fuzz_}.dict ] && dict="-dict=tests/fuzz/$${t#fuzz_}.dict"; \
	    reg=""; [ -d tests/fuzz/regressions/$$t ] && reg="tests/fuzz/regressions/$$t"; \
	    echo "== $$t ($(FUZZ_SECONDS) s)"; \
	    $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=25 -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ $$dict $(FUZZ_DIR)/corpus/$$t $$reg \
	        > $(FUZZ_DIR)/$$t.log 2>&1 \
	        || { tail -n 60 $(FUZZ_DIR)/$$t.log; echo "fuzz: $$t failed (see $(FUZZ_DIR)/$$t.log)"; exit 1; }; \
	    grep -E '^stat::number_of_executed_units|^Done ' $(FUZZ_DIR)/$$t.log | tr '\n' ' '; echo; \
	done

-include $(FUZZ_LIB_OBJ:.o=.d)
