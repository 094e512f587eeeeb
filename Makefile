# The two front-door commands: `make demo` and `make test`. Both install what they need into the current
# Python (python3, or PYTHON=...), starting from a bare machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch's CPU wheel (a plain `torch` requirement could pull a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install install-test bench clean

install:
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[demo]"

install-test:
	$(PIP) install -q "$(TORCH_SPEC)"
	@# open3d (the 3d extra) needs libusb-1.0 to import; installed where apt-get exists (Debian/Ubuntu as root)
	@command -v apt-get >/dev/null 2>&1 && ! dpkg -s libusb-1.0-0 >/dev/null 2>&1 && \
		{ apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
		  { apt-get update -qq && apt-get install -y -qq libusb-1.0-0; }; } || true
	$(PIP) install -q -e ".[test]"

demo: install
	$(PYTHON) -m anofast demo

# The Triton kernels run on the CPU through Triton's interpreter (there is no GPU here); the tests that use
# them pick small shapes.
test: install-test
	TRITON_INTERPRET=1 $(PYTHON) -m pytest -q

bench: install-test
	$(PYTHON) benchmarks/compare_anomalib.py --help >/dev/null
	cd benchmarks && for f in bench_*.py; do $(PYTHON) $$f --quick || exit 1; done

clean:
	rm -rf build dist *.egg-info anofast/_C*.so anofast-demo .pytest_cache
