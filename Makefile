# One task runner for the project. `make help` lists the targets.
PYTHON ?= python
export LOOKUPD_REQUIRE_EXTENSION ?= 1

.PHONY: help install lint test test-pure bench bench-report export-check chaos fuzz fuzz-corpus annotate embed protos dist wheel dist-check clean

help:
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: ## editable install with the test and lint tools, compiled core required
	$(PYTHON) -m pip install -e '.[test,lint]'

lint: ## ruff (check + format), cython-lint, mypy, import-linter (the layers)
	ruff check .
	ruff format --check .
	cython-lint ext/
	mypy
	lint-imports

test: ## the test suite on the compiled core
	pytest

test-pure: ## the test suite on the pure-Python core
	LOOKUPD_NO_EXTENSIONS=1 pytest -m "not slow"

bench: ## benchmarks against the peers (needs .[bench])
	pytest bench/ --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

bench-report: ## the benchmark suite, quick: results dir, report, plots, bench/README.md (needs .[bench])
	PYTHONPATH=. $(PYTHON) bench/suite.py --quick

export-check: ## lookupd export mmdb of the embedded data, checked with maxminddb (about 2 min)
	LOOKUPD_EXPORT_EMBEDDED=1 $(PYTHON) -m pytest tests/test_export_mmdb.py -k embedded -v

CHAOS_SECONDS ?= 60
chaos: ## chaos benchmark: lookupd serve --workers 2 under load and faults (bench/chaos.py)
	$(PYTHON) bench/chaos.py --duration $(CHAOS_SECONDS) --out build/chaos

# The long fuzz run: FUZZ_SECONDS per target; new inputs and findings under build/fuzz/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= parse wire formats snapshot
fuzz: ## coverage-guided fuzzing (atheris, .[test]): FUZZ_SECONDS (600) per target
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/$$t/corpus build/fuzz/$$t/findings; \
		echo "== fuzz_$$t for $(FUZZ_SECONDS) s (log: build/fuzz/$$t/log)"; \
		$(PYTHON) fuzz/fuzz_$$t.py -max_total_time=$(FUZZ_SECONDS) \
			-artifact_prefix=build/fuzz/$$t/findings/ build/fuzz/$$t/corpus fuzz/corpus/$$t \
			> build/fuzz/$$t/log 2>&1; \
		grep -E 'DONE|stat::number_of_executed_units|Uncaught|Finding|ERROR: libFuzzer' \
			build/fuzz/$$t/log; \
		ls build/fuzz/$$t/findings; \
	done

fuzz-corpus: ## rewrite the seed corpus fuzz/corpus/ (after a change to a target's input)
	$(PYTHON) fuzz/make_corpus.py

annotate: ## cython -a: HTML showing where the cores touch Python
	cython -3 -a ext/*.pyx

embed: ## recompile lookupd/data from the vendored CSVs in tests/data
	$(PYTHON) tools/embed_data.py

protos: ## regenerate lookupd/v1 from proto/ (needs grpcio-tools; commit the result)
	$(PYTHON) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/lookupd/v1/lookup.proto

dist: ## build the sdist, then the wheel from it, into dist/ (python -m build)
	$(PYTHON) -m build --outdir dist .

wheel: dist ## the same as dist

dist-check: ## build both, check their contents, install each in a new venv: compiled cores?
	$(PYTHON) tools/check_dist.py

clean:
	rm -rf build dist *.egg-info ext/*.c ext/*.html lookupd/core/*.so

# The container image (Dockerfile) and its end-to-end run (deploy/e2e/kube_play.py). The
# version and revision go in as --label: podman 4.3 reuses a cached LABEL layer built with
# another --build-arg value.
.PHONY: image k8s-e2e
CONTAINER ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMAGE ?= lookupd:$(IMAGE_VERSION)
IMAGE_ARGS ?=
image: ## the container image: CONTAINER (podman or docker), IMAGE, IMAGE_ARGS (more build options)
	$(CONTAINER) build $(IMAGE_ARGS) --label org.opencontainers.image.version=$(IMAGE_VERSION) \
		--label org.opencontainers.image.revision=$$(git describe --always --dirty 2>/dev/null || echo unknown) \
		-t $(IMAGE) .

k8s-e2e: ## before a release: image from a local base, podman run and kube play of overlays/test
	$(PYTHON) deploy/e2e/kube_play.py

# overlays/envoy-native: the gateway's Envoy config, rendered from the base's policies.yaml
# by `lookupd export envoy` (tests/test_native_gateway.py fails when it is out of date).
.PHONY: envoy-native-config
envoy-native-config: ## render deploy/kubernetes/overlays/envoy-native/gateway/envoy.yaml (render.sh)
	sh deploy/kubernetes/overlays/envoy-native/render.sh
