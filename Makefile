# pyaccel: `make demo` and `make test` set up everything they need
# (host packages, downloads, builds); outputs are cached in ~/.cache/pyaccel.
SHELL := /bin/bash
BOARD := python3 scripts/board.py
PYTEST_ARGS ?=
ACCELS ?= 1
# The guest kernel: 6.1 (Debian bookworm's, the default), 6.12 (Debian's 6.12
# for bookworm), debug (built from source with KASAN, lockdep, UBSAN,
# kmemleak...: guest/debug-kernel.sh). make stress uses debug unless given.
KERNEL ?= 6.1
export PYACCEL_KERNEL := $(KERNEL)
STRESS_KERNEL := $(if $(filter command line environment,$(origin KERNEL)),$(KERNEL),debug)

.PHONY: help setup artifacts qemu module dtb test test-host demo run lint clean bench-device bench profile study stress

help:
	@echo "make demo       build everything, boot the board, show the accelerator"
	@echo "make test       host tests + the in-guest suite on the emulated board"
	@echo "make run        interactive guest shell (CMD='...' runs one command)"
	@echo "                KERNEL=6.12 or KERNEL=debug: another guest kernel (default 6.1)"
	@echo "make artifacts  build QEMU, kernel module, guest image and device trees"
	@echo "make bench-device  the device's compute kernels vs PyTorch on the host"
	@echo "make bench      the device vs the guest CPU and host PyTorch: ratios, overhead, scaling"
	@echo "make profile    perf on QEMU while the guest runs MobileNet-v1 (float32, int8) and tiny jobs: where the time goes"
	@echo "make study      the width/depth study on Fashion-MNIST: train, evaluate on the device (resumable)"
	@echo "make stress     fuzz, faults, load, life cycle, isolation: one table of figures"
	@echo "make lint       checkpatch --strict, kernel-doc and sparse on the driver"

setup:
	@scripts/setup-host.sh

artifacts: setup
	@scripts/build-all.sh

qemu: setup
	@qemu/build.sh

module: setup
	@. scripts/lib.sh && kernel/build.sh "$$(kernel_fetch)" "$$(kernel_boot_dir)/kernel"

dtb: artifacts
	@$(BOARD) dtb --accels $(ACCELS)

# The host test venv is made while the board builds (both are slow only once).
test: setup
	@scripts/venv.sh >/dev/null & venv=$$!; scripts/build-all.sh && wait $$venv && \
		py=$$(scripts/venv.sh) && $$py -m pytest -ra $(PYTEST_ARGS) tests/host

demo: artifacts
	@$(BOARD) run --accels $(ACCELS) -- 'python3 -m pyaccel list && python3 -m pyaccel info && python3 -m pyaccel demo && python3 -m pyaccel analyze mobilenet_v1 --width 0.25 --resolution 32 --classes 10 --data random:16 --analyze-images 2'

run: artifacts
	@$(BOARD) run --accels $(ACCELS) $(if $(CMD),-- '$(subst ','\'',$(CMD))')

lint:
	@kernel/lint.sh

stress: setup
	@PYACCEL_KERNEL=$(STRESS_KERNEL) scripts/build-all.sh
	@QEMU_ASAN=1 qemu/build.sh
	@py=$$(scripts/venv.sh) && $$py tests/stress/stress.py --kernel $(STRESS_KERNEL)

bench-device: setup
	@qemu/compute/build.sh
	@py=$$(scripts/venv.sh bench/requirements.txt) && $$py bench/bench_device.py

bench: setup
	@py=$$(scripts/venv.sh bench/requirements.txt) && $$py bench/bench.py

profile: setup
	@py=$$(scripts/venv.sh bench/requirements.txt) && $$py bench/profile.py

study: artifacts
	@py=$$(scripts/venv.sh bench/requirements.txt) && nice -n 19 $$py study/run.py

clean:
	rm -rf build
