# lookupd's container image: the build stage compiles the Cython cores into a virtual
# environment, the runtime stage holds that environment and the Python that runs it, nothing
# else (no compiler, pip, Cython or setuptools).
#
#   docker build -t lookupd .
#   podman build -t lookupd .
#
# BASE_IMAGE is the runtime base and, unless BUILD_IMAGE is given, the build base too: any
# Debian-like image with Python 3.11 or later as `python3`. The build stage installs a
# compiler and Python's headers with apt only where the base lacks them (python:3.12-slim has
# the headers, not gcc). The runtime base must have the same Python at the same path as the
# build base: the environment's interpreter is a symlink to it. deploy/e2e/base-image.sh makes
# a Debian pair for building without any registry (BUILD_IMAGE with the compiler, BASE_IMAGE
# with python3 only).
#
# Building behind a private index or a TLS-intercepting proxy: pass a pip configuration file
# and a CA bundle as build secrets (BuildKit and podman; the file names the CA as
# /run/secrets/pipca), so neither lands in a layer:
#   podman build --secret id=pipconf,src=pip.conf --secret id=pipca,src=ca.crt .
# Without them pip uses its defaults.

ARG BASE_IMAGE=python:3.12-slim
ARG BUILD_IMAGE=${BASE_IMAGE}

FROM ${BUILD_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# DL3008 (pin apt versions) is ignored: the versions are those of the base image's release,
# and a pinned version disappears from the mirror at its next point release.
# hadolint ignore=DL3008
RUN set --; \
    command -v gcc >/dev/null || set -- "$@" gcc libc6-dev; \
    python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))' \
        || set -- "$@" python3-dev; \
    python3 -c 'import ensurepip' 2>/dev/null || set -- "$@" python3-venv; \
    if [ "$#" -gt 0 ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends "$@" \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# Two environments: /opt/build holds the build tools (Cython, setuptools, numpy), /opt/lookupd
# what lookupd needs at run time; only the second goes into the runtime stage.
RUN python3 -m venv /opt/build && python3 -m venv /opt/lookupd

WORKDIR /src

# The dependencies, their own layer: read from pyproject.toml alone, so a change to the
# source reuses this layer (pyproject.toml changes rebuild it). tomllib: Python 3.11+.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pipconf --mount=type=secret,id=pipca \
    if [ -f /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    python3 -I -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
open("/tmp/build.txt", "w").write("\n".join(p["build-system"]["requires"])); \
open("/tmp/runtime.txt", "w").write("\n".join(p["project"]["dependencies"]))' \
    && /opt/build/bin/pip install -r /tmp/build.txt \
    && /opt/lookupd/bin/pip install -r /tmp/runtime.txt

# The compiled cores, their own layer: built from setup.py and ext/ alone, so a change to the
# Python sources reuses them (the wheel build below finds them up to date in build/). A
# failed compile fails the build.
ENV LOOKUPD_REQUIRE_EXTENSION=1
COPY setup.py ./
COPY ext ext
RUN /opt/build/bin/python setup.py build_ext

# The project, with the build tools installed above (no index needed).
COPY MANIFEST.in README.md LICENSE ./
COPY lookupd lookupd
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /tmp/wheels . \
    && /opt/lookupd/bin/pip install --no-deps /tmp/wheels/lookupd-*.whl

# Outside the source tree (where `import lookupd` would find the sources): the installed
# package must load its compiled cores. Then pip leaves the runtime environment.
WORKDIR /
RUN /opt/lookupd/bin/python -I -c 'from lookupd.core import _parse, _search; \
assert (_search.CORE, _parse.CORE) == ("c", "c"), (_search.CORE, _parse.CORE)' \
    && /opt/lookupd/bin/lookupd version \
    && /opt/lookupd/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && ! /opt/lookupd/bin/python -I -c 'import pip' 2>/dev/null \
    && ! /opt/lookupd/bin/python -I -c 'import Cython' 2>/dev/null

FROM ${BASE_IMAGE}

# A base with pip in its system Python (the official python images) loses it: the image
# installs nothing at run time.
RUN if python3 -c 'import pip' 2>/dev/null; then \
        python3 -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi

COPY --from=build /opt/lookupd /opt/lookupd

ENV PATH=/opt/lookupd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The runtime base's Python must run the environment built on the build base.
RUN ["lookupd", "version"]

# A fixed uid with no account: Kubernetes' runAsUser and runAsNonRoot need a number. The
# root file system may be read-only: lookupd writes only in its run directory, under /tmp
# (TMPDIR) by default, which must be writable (an emptyDir, or `--tmpfs /tmp`).
USER 10001:10001
WORKDIR /

# 50051: gRPC (lookups and grpc.health.v1); 50052: Prometheus metrics, when --metrics-port
# (LOOKUPD_METRICS_PORT) is set. Health is checked over gRPC by the orchestrator's probes; the
# image has no HEALTHCHECK (Docker's would need a gRPC client in a shell command).
EXPOSE 50051 50052
ENTRYPOINT ["lookupd"]
CMD ["serve"]

# Last, so that a new revision changes only this metadata layer. podman 4.3 reuses a cached
# LABEL layer made with other --build-arg values: with podman, set version and revision with
# `--label` (make image does).
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="lookupd" \
      org.opencontainers.image.description="High-throughput IP-to-country lookups: a Cython range-table core and a gRPC service." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
