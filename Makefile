# hylo build. `make` builds build/libhylo.a, build/hylo and the public header ref/hylo.h.
# See README.md for the targets.

CC       ?= gcc
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O2
SAN      ?=
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE $(OPT) -g -fopenmp -Wall -Wextra -Wpedantic -Wshadow \
                 -Wstrict-prototypes -Wvla -Wformat=2 -Iref $(SAN)
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
CHECK_LIBS  := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)
LIBS        := -lcjson $(BLAS_LIBS) -lm -fopenmp $(SAN)

LIB_SRC  := $(sort $(wildcard ref/*/*.c backend_cpu/*/*.c))
TOOL_SRC := $(sort $(wildcard tools/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_LIB := tests/testutil.c

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
HEADERS  := $(wildcard ref/*.h ref/*/*.h backend_cpu/*/*.h tools/*.h tests/*.h)

.PHONY: all deps test asan demo install uninstall clean golden hip
all: $(BUILD)/libhylo.a $(BUILD)/hylo

deps:
	@sh tools/install-deps.sh

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(BLAS_CFLAGS) -c $< -o $@

$(BUILD)/libhylo.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/hylo: $(TOOL_OBJ) $(BUILD)/libhylo.a
	$(CC) $(CFLAGS_COMMON) -o $@ $(TOOL_OBJ) $(BUILD)/libhylo.a $(LIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_LIB) $(BUILD)/libhylo.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -Itests -o $@ $< $(TEST_LIB) $(BUILD)/libhylo.a $(CHECK_LIBS) $(LIBS)

# The suite runs from a scratch directory; tools/run-tests.sh sums Check's counts.
test: deps
	@$(MAKE) --no-print-directory all $(TESTS)
	@sh tools/run-tests.sh $(BUILD) $(TESTS)

# The same suite under AddressSanitizer + UBSan, in its own build tree ($(BUILD)/asan).
asan: deps
	@$(MAKE) --no-print-directory test BUILD=$(BUILD)/asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# Regenerates golden/cases/ from ref/ (deterministic: byte-identical on every run).
golden: deps
	@$(MAKE) --no-print-directory all
	@sh tools/make-golden.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tools/demo.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(BUILD)/libhylo.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 ref/hylo.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BUILD)/hylo $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^#define HYLO_VERSION "\(.*\)"/\1/p' ref/hylo.h)|' \
	    tools/hylo.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hylo.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libhylo.a $(DESTDIR)$(PREFIX)/include/hylo.h \
	    $(DESTDIR)$(PREFIX)/bin/hylo $(DESTDIR)$(PREFIX)/lib/pkgconfig/hylo.pc

clean:
	rm -rf build

# The HIP backend (backend_hip/), never part of the CPU build: `make hip` compiles it with hipcc
# for AMD (HIP_ARCH, default gfx90a; hipBLAS when installed, else the built-in GEMM), and
# `make hip HIP_PLATFORM=nvidia` with nvcc (HIP_ARCH default sm_90) through
# backend_hip/hip_compat.h and cuBLAS. Into $(BUILD)/hip-<platform>/: `hylo` (the CLI with
# --backend hip), `hylo-hip-check` (every op against ref/) and `hylo-hip-bench`.
HIP_PLATFORM ?= amd
HIP_BUILD    := $(BUILD)/hip-$(HIP_PLATFORM)
ifeq ($(HIP_PLATFORM),nvidia)
HIP_ARCH     ?= sm_90
HIPCC        ?= nvcc
CUDA_HOME    ?= /usr/local/cuda
HIP_CXXFLAGS := -x cu -std=c++17 -O2 -arch=$(HIP_ARCH) -DHYLO_HIP_NVIDIA -DHYLO_HIP_BLAS \
                -Xcompiler -Wall,-Wextra
HIP_LIBS     := -L$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
else
HIP_ARCH     ?= gfx90a
HIPCC        ?= hipcc
ROCM_PATH    ?= /opt/rocm
HIPBLAS      ?= $(if $(wildcard $(ROCM_PATH)/include/hipblas/hipblas.h /usr/include/hipblas/hipblas.h),1)
HIP_CXXFLAGS := -x hip -std=c++17 -O2 --offload-arch=$(HIP_ARCH) -Wall -Wextra \
                $(if $(HIPBLAS),-DHYLO_HIP_BLAS -DHIPBLAS_V2)
HIP_LIBS     := -L$(ROCM_PATH)/lib $(if $(HIPBLAS),-lhipblas) -lamdhip64 -lstdc++
endif
HIP_SRC      := $(sort $(wildcard backend_hip/*/*.hip))
HIP_C_SRC    := $(sort $(wildcard backend_hip/core/*.c backend_hip/model/*.c))
HIP_HEADERS  := $(HEADERS) $(wildcard backend_hip/*.h backend_hip/*/*.h)
HIP_OBJ      := $(HIP_SRC:%.hip=$(HIP_BUILD)/obj/%.o) $(HIP_C_SRC:%.c=$(HIP_BUILD)/obj/%.o)
HIP_TOOLS    := $(HIP_BUILD)/hylo $(HIP_BUILD)/hylo-hip-check $(HIP_BUILD)/hylo-hip-bench

hip: $(HIP_TOOLS)

$(HIP_BUILD)/obj/%.o: %.hip $(HIP_HEADERS)
	@mkdir -p $(dir $@)
	$(HIPCC) $(HIP_CXXFLAGS) -Iref -Ibackend_hip -c $< -o $@

$(HIP_BUILD)/obj/%.o: %.c $(HIP_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -Ibackend_hip -c $< -o $@

$(HIP_BUILD)/hylo: $(TOOL_OBJ) $(HIP_OBJ) $(BUILD)/libhylo.a
	$(CC) $(CFLAGS_COMMON) -o $@ $(TOOL_OBJ) $(HIP_OBJ) $(BUILD)/libhylo.a $(LIBS) $(HIP_LIBS)

$(HIP_BUILD)/hylo-hip-%: $(HIP_BUILD)/obj/backend_hip/tools/%.o $(HIP_OBJ) $(BUILD)/libhylo.a
	$(CC) $(CFLAGS_COMMON) -o $@ $< $(HIP_OBJ) $(BUILD)/libhylo.a $(LIBS) $(HIP_LIBS)
