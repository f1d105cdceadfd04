#!/usr/bin/env python3
"""The end-to-end run of lookupd's image and Kubernetes test overlay with podman (`make k8s-e2e`).

Without any container registry: the base images come from deploy/e2e/base-image.sh (Debian
by mmdebstrap, imported into podman). Then, every wait bounded and everything removed again
even on failure (the images are kept: they are the build cache):

1. build the image (cold, with no cache; unchanged, all cached; after a change to the Python
   sources, then to a Cython core, in a copy of the build context) and time each build;
2. check the image: size, user, entrypoint, ports, no compiler, pip or Cython, /tmp 1777;
3. run it with a read-only root and a tmpfs /tmp as uid 10001 on 127.0.0.1 (host network)
   until health SERVING, ask it, stop it with SIGTERM; and without a writable /tmp, where it
   must exit 2 with one line;
4. render deploy/kubernetes/overlays/test and `podman kube play` it: wait for gRPC health
   SERVING (podman ignores gRPC probes, so this script is the probe), call every RPC, read
   the metrics, update the policy file the way the kubelet updates a ConfigMap volume and
   wait for GetInfo's new policy version (with calls running throughout, none may fail),
   stop the pod gracefully (health NOT_SERVING while calls are still answered during the
   drain; exit 0; the log says stopped), `podman kube down`, remove the volumes.

podman (4.3) mounts a ConfigMap volume as a plain directory holding the key's file, not in
the kubelet's layout (timestamped directory, ``..data`` symlink, key symlinks), and never
updates it. So the rendered overlay's ConfigMap volume is replaced by a hostPath volume on a
directory this script lays out and updates exactly as the kubelet's atomic writer does.

Every address used is 127.0.0.1: containers run on the host network only (podman's default
bridge network would create 10.x addresses). Needs podman, runc, kubectl (kustomize) and,
for the base images, root and mmdebstrap. The figures are printed and written as JSON
(--result, default build/e2e/result.json).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lookupd.client import Client, ServerError
from lookupd.codes import Status, Verdict
from lookupd.policies import load_policies
from lookupd.version import __version__

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "e2e"
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "test"
IMAGE = "localhost/lookupd:e2e"
BASE_REPOSITORY = "localhost/lookupd-base"
LOOKUP_SERVICE = "lookupd.v1.LookupService"
LOOPBACK = "127.0.0.1"

# Answers the embedded data gives (the CI's install check asks the same).
EXPECTED = {"1.1.1.1": "AU", "2001:4860:4860::8888": "US"}
ADDED_POLICY = "e2e-only-au"
ADDED_POLICY_TEXT = f"""
  # Added by deploy/e2e/kube_play.py: the ConfigMap update it makes.
  {ADDED_POLICY}:
    description: Only Australia (the end-to-end run's policy update).
    allow_countries: [AU]
"""

# Bounds on the waits: generous for a loaded 2-core machine, never open-ended.
BUILD_TIMEOUT_S = 1200
COMMAND_TIMEOUT_S = 120
READY_TIMEOUT_S = 120
RELOAD_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
CALL_TIMEOUT_S = 10


class E2EError(Exception):
    """A check failed: the message says which and what was seen."""


def log(message: str) -> None:
    print(message, flush=True)


def run(
    args: list[str],
    *,
    timeout: float = COMMAND_TIMEOUT_S,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (bounded), its output captured."""
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise E2EError(f"{' '.join(args)}: still running after {timeout} s") from exc
    if check and done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise E2EError(f"{' '.join(args)}: exit {done.returncode}\n{tail}")
    return done


def podman(*args: str, timeout: float = COMMAND_TIMEOUT_S, check: bool = True) -> str:
    return run(["podman", *args], timeout=timeout, check=check).stdout


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise E2EError(message)


def free_port() -> int:
    """A port free on 127.0.0.1 now (the kernel's pick; taken again by the server soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def health_status(channel: grpc.Channel, service: str) -> int:
    # The typing stubs of grpcio-health-checking do not declare the methods.
    stub: Any = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(response.status)


def wait_serving(target: str, timeout_s: float, what: Callable[[], str]) -> float:
    """Act as the gRPC readiness probe: Check until SERVING for both services; return the
    seconds it took. ``what`` says why it may have failed (e.g. the container's log)."""
    start = time.monotonic()
    deadline = start + timeout_s
    last = "no answer"
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            try:
                statuses = [health_status(channel, s) for s in ("", LOOKUP_SERVICE)]
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            else:
                if all(s == health_pb2.HealthCheckResponse.SERVING for s in statuses):
                    return time.monotonic() - start
                last = f"statuses {statuses}"
            time.sleep(0.25)
    raise E2EError(f"{target}: not SERVING within {timeout_s} s ({last})\n{what()}")


def check_answers(client: Client) -> None:
    """Lookup (text), LookupPacked and StreamLookup answer as the embedded data says."""
    addresses = [*EXPECTED, "10.0.0.1"]
    want = [*EXPECTED.values(), ""]
    packed = client.lookup(addresses)
    expect(list(packed.countries) == want, f"LookupPacked answered {list(packed.countries)}")
    expect(int(packed.status[2]) == Status.RESERVED, f"10.0.0.1: status {packed.status[2]}")
    text = client.lookup(addresses, text=True)
    expect(list(text.countries) == want, f"Lookup answered {list(text.countries)}")
    streamed = [str(a.countries[0]) for a in client.stream([[a] for a in EXPECTED])]
    expect(streamed == list(EXPECTED.values()), f"StreamLookup answered {streamed}")


# ---------------------------------------------------------------------------------------
# Building


def pip_secrets(directory: Path) -> list[str]:
    """`--secret` arguments with this machine's pip index and CA bundle, if it has any.

    pip reaches its index here through a TLS-intercepting proxy, so the build needs the CA
    bundle pip trusts; as build secrets, neither the index nor the bundle lands in a layer.
    Local (file:) indexes are left out: the build cannot see them.
    """
    listed = run([sys.executable, "-m", "pip", "config", "list"], check=False).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        settings[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    lines = ["[global]"]
    for key in ("index-url", "extra-index-url", "trusted-host"):
        urls = [u for u in settings.get(key, "").split() if not u.startswith("file:")]
        if urls:
            lines.append(f"{key} = {' '.join(urls)}")
    args = []
    cert = os.environ.get("PIP_CERT") or settings.get("cert")
    if cert and Path(cert).is_file():
        lines.append("cert = /run/secrets/pipca")
        args += ["--secret", f"id=pipca,src={cert}"]
    if len(lines) == 1:
        return []
    conf = directory / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    return ["--secret", f"id=pipconf,src={conf}", *args]


def revision() -> str:
    done = run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], check=False)
    return done.stdout.strip() or "unknown"


def build(context: Path, tag: str, common: list[str], *, no_cache: bool) -> tuple[float, str]:
    """Build ``tag`` from ``context``; return the seconds it took and the build's output."""
    args = ["podman", "build", "--network=host", *common, "-t", tag, str(context)]
    if no_cache:
        args.insert(2, "--no-cache")
    start = time.monotonic()
    done = run(args, timeout=BUILD_TIMEOUT_S)
    return time.monotonic() - start, done.stdout + done.stderr


def copy_context(destination: Path) -> None:
    """The build context's files (those .dockerignore lets in), copied."""
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, destination / name)
    for name in ("Dockerfile", ".dockerignore"):
        shutil.copy2(ROOT / name, destination / name)
    (destination / "ext").mkdir()
    for source in (ROOT / "ext").glob("*.pyx"):
        shutil.copy2(source, destination / "ext" / source.name)
    shutil.copytree(
        ROOT / "lookupd",
        destination / "lookupd",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"),
    )


def step_cached(output: str, marker: str) -> bool:
    """Whether the build step whose line holds ``marker`` came from the layer cache."""
    lines = output.splitlines()
    for n, line in enumerate(lines):
        if "STEP" in line and marker in line:
            return n + 1 < len(lines) and "Using cache" in lines[n + 1]
    raise E2EError(f"the build output has no step with {marker!r}")


def steps_run(output: str) -> list[str]:
    """The build steps that did not come from the layer cache: FROM aside, and the LABEL
    step podman adds for --label (metadata, made anew each time)."""
    lines = output.splitlines()
    return [
        line.partition("STEP ")[2][:60]
        for n, line in enumerate(lines)
        if "STEP " in line
        and ": FROM " not in line
        and ": LABEL " not in line
        and not (n + 1 < len(lines) and "Using cache" in lines[n + 1])
    ]


# The Dockerfile's dependency step and its step compiling the Cython cores.
DEPS_STEP = "/tmp/runtime.txt"
CORES_STEP = "setup.py build_ext"


def build_all(work: Path, figures: dict[str, Any], *, cold: bool) -> None:
    log("== base images (deploy/e2e/base-image.sh; existing ones are kept)")
    start = time.monotonic()
    run([str(HERE / "base-image.sh")], timeout=BUILD_TIMEOUT_S)
    figures["base_images_s"] = round(time.monotonic() - start, 1)
    common = [
        *pip_secrets(work),
        "--build-arg",
        f"BASE_IMAGE={BASE_REPOSITORY}:runtime",
        "--build-arg",
        f"BUILD_IMAGE={BASE_REPOSITORY}:build",
        # Labels, not build arguments: podman 4.3 reuses a cached LABEL layer made with other
        # --build-arg values.
        "--label",
        f"org.opencontainers.image.version={__version__}",
        "--label",
        f"org.opencontainers.image.revision={revision()}",
    ]
    if cold:
        # Earlier runs' images and their layer chains go first: podman 4.3 may take an
        # unchanged rebuild's first steps from an older chain than the cold build's, and
        # every step after the first that differs from that chain then runs again.
        run(["podman", "rmi", "--ignore", IMAGE], timeout=BUILD_TIMEOUT_S)
        run(["podman", "image", "prune", "--force"], timeout=BUILD_TIMEOUT_S)
    log(f"== build {IMAGE} ({'cold: --no-cache' if cold else 'with the cache'})")
    seconds, _ = build(ROOT, IMAGE, common, no_cache=cold)
    figures["build_cold_s" if cold else "build_s"] = round(seconds, 1)
    log(f"ok: built in {seconds:.1f} s")

    seconds, output = build(ROOT, IMAGE, common, no_cache=False)
    figures["build_unchanged_s"] = round(seconds, 1)
    ran = steps_run(output)
    expect(not ran, f"an unchanged rebuild ran {ran}")
    log(f"ok: unchanged rebuild in {seconds:.1f} s, every step from the cache")

    changed = work / "context"
    changed.mkdir()
    copy_context(changed)
    tag = f"{IMAGE}-source-change"
    # New text each run: the same change made before would come from the layer cache.
    unique = uuid.uuid4().hex
    try:
        # A change to the Python sources: dependencies and compiled cores come from the cache.
        with (changed / "lookupd" / "version.py").open("a") as source:
            source.write(f"\n# A change to the Python sources (kube_play.py): {unique}\n")
        seconds, output = build(changed, tag, common, no_cache=False)
        figures["build_python_change_s"] = round(seconds, 1)
        expect(step_cached(output, DEPS_STEP), "a Python change reinstalled the dependencies")
        expect(step_cached(output, CORES_STEP), "a Python change recompiled the Cython cores")
        log(f"ok: rebuild after a Python change in {seconds:.1f} s, deps and cores cached")
        # A change to a Cython core: recompiled, the dependencies still cached.
        with (changed / "ext" / "_search_c.pyx").open("a") as source:
            source.write(f"\n# A change to a Cython core (kube_play.py): {unique}\n")
        seconds, output = build(changed, tag, common, no_cache=False)
        figures["build_cython_change_s"] = round(seconds, 1)
        expect(step_cached(output, DEPS_STEP), "a Cython change reinstalled the dependencies")
        expect(not step_cached(output, CORES_STEP), "a Cython change did not recompile")
        log(f"ok: rebuild after a Cython change in {seconds:.1f} s, deps cached")
    finally:
        podman("rmi", "--force", tag, check=False)


# ---------------------------------------------------------------------------------------
# The image on its own


def check_image(figures: dict[str, Any]) -> None:
    log("== the image")
    (info,) = json.loads(podman("image", "inspect", IMAGE))
    config = info["Config"]
    figures["image_size_bytes"] = int(info["Size"])
    figures["image_size_mb"] = round(int(info["Size"]) / 1e6)
    expect(config.get("User") == "10001:10001", f"user {config.get('User')!r}")
    expect(config.get("Entrypoint") == ["lookupd"], f"entrypoint {config.get('Entrypoint')}")
    expect(config.get("Cmd") == ["serve"], f"cmd {config.get('Cmd')}")
    ports = sorted(config.get("ExposedPorts", {}))
    expect(ports == ["50051/tcp", "50052/tcp"], f"exposed ports {ports}")
    labels = config.get("Labels") or {}
    version = labels.get("org.opencontainers.image.version")
    expect(version == __version__, f"label version {version!r}")
    # No network at all for this one: it only looks at files.
    probe = (
        "for tool in gcc cc c++ pip pip3 cython cythonize; do"
        ' command -v "$tool" && exit 1; done;'
        " python3 -c 'import pip' 2>/dev/null && exit 2;"
        " for module in pip Cython setuptools; do"
        ' /opt/lookupd/bin/python -c "import $module" 2>/dev/null && exit 3; done;'
        " stat -c %a /tmp; id -u"
    )
    done = run(
        ["podman", "run", "--rm", "--network=none", "--entrypoint", "/bin/sh", IMAGE, "-c", probe],
        check=False,
    )
    expect(done.returncode == 0, f"a compiler, pip or Cython in the image: {done.stdout}")
    expect(done.stdout.split() == ["1777", "10001"], f"/tmp mode and uid: {done.stdout!r}")
    log(f"ok: {figures['image_size_mb']} MB, uid 10001, lookupd serve, no compiler/pip/Cython")


def check_read_only(figures: dict[str, Any], suffix: str) -> None:
    log("== podman run: read-only root, tmpfs /tmp, host network, 127.0.0.1")
    name = f"lookupd-e2e-ro-{suffix}"
    port = free_port()
    # --read-only-tmpfs=false: only the /tmp named here is writable (podman would otherwise
    # add tmpfs mounts on /run, /var/tmp and /tmp by itself).
    read_only = ["--network=host", "--read-only", "--read-only-tmpfs=false"]
    serve = ["serve", "--host", LOOPBACK, "--port", str(port)]
    try:
        podman("run", "-d", "--name", name, *read_only, "--tmpfs", "/tmp", IMAGE, *serve)
        target = f"{LOOPBACK}:{port}"
        seconds = wait_serving(target, READY_TIMEOUT_S, lambda: podman("logs", name))
        figures["run_serving_s"] = round(seconds, 2)
        with Client(target, timeout_s=CALL_TIMEOUT_S) as client:
            check_answers(client)
        uid = podman("exec", name, "id", "-u").strip()
        expect(uid == "10001", f"runs as uid {uid}")
        podman("stop", "--time", str(STOP_TIMEOUT_S), name, timeout=STOP_TIMEOUT_S + 30)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).strip()
        logs = run(["podman", "logs", name]).stderr
        expect(code == "0", f"exit {code} on SIGTERM\n{logs[-2000:]}")
        expect("event=stopped" in logs, f"no event=stopped in the log\n{logs[-2000:]}")
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
    log(f"ok: SERVING after {seconds:.2f} s, answered, uid 10001, stopped cleanly (exit 0)")

    log("== podman run: read-only root and no writable /tmp")
    done = run(["podman", "run", "--rm", *read_only, IMAGE, *serve], check=False)
    lines = done.stderr.splitlines()
    expect(done.returncode == 2, f"exit {done.returncode}, not 2\n{done.stderr[-2000:]}")
    expect(len(lines) == 1 and "Traceback" not in done.stderr, f"stderr: {done.stderr!r}")
    figures["no_writable_tmp"] = lines[0]
    log(f"ok: exit 2: {lines[0]}")


# ---------------------------------------------------------------------------------------
# The test overlay with podman kube play


def timestamped(volume: Path, files: dict[str, str], n: int) -> Path:
    """A timestamped directory as the kubelet's atomic writer makes it (0644 files)."""
    directory = volume / time.strftime(f"..%Y_%m_%d_%H_%M_%S.{n:09d}", time.gmtime())
    directory.mkdir(mode=0o755)
    for key, text in files.items():
        (directory / key).write_text(text)
        (directory / key).chmod(0o644)
    return directory


def make_configmap_volume(volume: Path, files: dict[str, str]) -> Path:
    """The kubelet's ConfigMap volume: ``..data`` -> the timestamped directory, and each key
    a symlink to ``..data/KEY``."""
    volume.mkdir(mode=0o755)
    first = timestamped(volume, files, 0)
    (volume / "..data").symlink_to(first.name)
    for key in files:
        (volume / key).symlink_to(f"..data/{key}")
    return first


def update_configmap_volume(volume: Path, files: dict[str, str], old: Path, n: int) -> Path:
    """The atomic writer's update: a new timestamped directory, ``..data_tmp`` pointed at it
    and renamed over ``..data`` (one atomic step), the old directory removed."""
    new = timestamped(volume, files, n)
    (volume / "..data_tmp").symlink_to(new.name)
    os.rename(volume / "..data_tmp", volume / "..data")
    shutil.rmtree(old)
    return new


class Rendered:
    """The test overlay, rendered and fitted to this run: free ports, a hostPath volume in
    the kubelet's ConfigMap layout instead of podman's."""

    def __init__(self, work: Path) -> None:
        text = run(["kubectl", "kustomize", str(OVERLAY)]).stdout
        self.docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d]
        deployments = [d for d in self.docs if d["kind"] == "Deployment"]
        expect(len(deployments) == 1, f"{len(deployments)} Deployments in the test overlay")
        self.deployment = deployments[0]
        pod = self.deployment["spec"]["template"]["spec"]
        expect(pod.get("hostNetwork") is True, "the test overlay's pod is not on hostNetwork")
        (self.container,) = [c for c in pod["containers"] if c["name"] == "lookupd"]
        expect("ports" not in self.container, "container ports (podman makes them hostPorts)")
        expect(self.container.get("imagePullPolicy") == "Never", "imagePullPolicy not Never")
        image = self.container["image"]
        expect(image == IMAGE, f"the test overlay runs {image}; this script builds {IMAGE}")
        env = {e["name"]: e for e in self.container["env"]}
        for name in ("LOOKUPD_HOST", "LOOKUPD_METRICS_HOST"):
            expect(env[name]["value"] == LOOPBACK, f"{name} is {env[name]['value']}")
        self.port = free_port()
        self.metrics_port = free_port()
        env["LOOKUPD_PORT"]["value"] = str(self.port)
        env["LOOKUPD_METRICS_PORT"]["value"] = str(self.metrics_port)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in self.container:
                self.container[probe]["grpc"]["port"] = self.port
        annotations = self.deployment["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/port" in annotations:
            annotations["prometheus.io/port"] = str(self.metrics_port)
        self.drain_s = float(env.get("LOOKUPD_DRAIN_S", {}).get("value", "0"))
        self.empty_dirs = [v["name"] for v in pod.get("volumes", []) if "emptyDir" in v]

        # The policy file: LOOKUPD_POLICIES inside a ConfigMap volume's mount.
        self.policies = policies = env["LOOKUPD_POLICIES"]["value"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = [
            m
            for m in self.container["volumeMounts"]
            if policies.startswith(m["mountPath"].rstrip("/") + "/")
            and "configMap" in volumes[m["name"]]
        ]
        expect(len(mounts) == 1, f"{policies} is not in one ConfigMap volume")
        volume = volumes[mounts[0]["name"]]
        expect("items" not in volume["configMap"], "a ConfigMap volume with items")
        (configmap,) = [
            d
            for d in self.docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
        ]
        self.files: dict[str, str] = dict(configmap["data"])
        self.key = policies[len(mounts[0]["mountPath"].rstrip("/")) + 1 :]
        expect(self.key in self.files, f"the ConfigMap has no key {self.key}")
        self.volume_dir = work / "policies-volume"
        self.data_dir = make_configmap_volume(self.volume_dir, self.files)
        volume.pop("configMap")
        volume["hostPath"] = {"path": str(self.volume_dir), "type": "Directory"}
        self.path = work / "rendered.yaml"
        self.path.write_text(yaml.safe_dump_all(self.docs, sort_keys=False))

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"


def policy_version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def json_events(logs: str) -> list[str]:
    events = []
    for line in logs.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "event" in record:
                events.append(str(record["event"]))
    return events


class Caller(threading.Thread):
    """Calls the server over one connection until stopped; counts the calls and failures."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.stopping = threading.Event()
        self.calls = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with Client(self.target, timeout_s=CALL_TIMEOUT_S) as client:
            while not self.stopping.is_set():
                try:
                    client.lookup(list(EXPECTED))
                except ServerError as exc:
                    self.failures.append(str(exc))
                self.calls += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=CALL_TIMEOUT_S * 2)


def kube_play(work: Path, figures: dict[str, Any], cleanup: contextlib.ExitStack) -> None:
    log("== podman kube play deploy/kubernetes/overlays/test (host network, 127.0.0.1)")
    rendered = Rendered(work)
    volumes_before = set(podman("volume", "ls", "--format", "{{.Name}}").split())
    clash = volumes_before.intersection(rendered.empty_dirs)
    expect(not clash, f"podman volumes {sorted(clash)} exist; kube play would reuse them")

    def down() -> None:
        run(["podman", "kube", "down", str(rendered.path)], check=False)
        for name in rendered.empty_dirs:
            podman("volume", "rm", "--force", name, check=False)

    cleanup.callback(down)
    output = podman("kube", "play", "--replace", str(rendered.path), timeout=READY_TIMEOUT_S)
    ids = [w for w in output.split() if len(w) == 64]
    expect(len(ids) >= 2, f"kube play printed no pod and container ids:\n{output}")
    pod_id, container = ids[0], ids[-1]

    def container_log() -> str:
        return run(["podman", "logs", container], check=False).stderr[-3000:]

    seconds = wait_serving(rendered.target, READY_TIMEOUT_S, container_log)
    figures["kube_play_serving_s"] = round(seconds, 2)
    user = podman("exec", container, "id", "-u").strip()
    expect(user == "10001", f"the pod's container runs as uid {user}")
    root_ro = podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", container)
    expect(root_ro.strip() == "true", "the pod's root file system is writable")
    log(f"ok: SERVING after {seconds:.2f} s (health Check, services '' and {LOOKUP_SERVICE})")
    mount = str(Path(rendered.policies).parent)
    seen = podman("exec", container, "readlink", f"{mount}/..data").strip()
    expect(seen == rendered.data_dir.name, f"{mount}/..data in the container: {seen!r}")

    with Client(rendered.target, timeout_s=CALL_TIMEOUT_S) as client:
        check_answers(client)
        info = client.info()
        first_text = rendered.files[rendered.key]
        expect(info.search_core == "c", f"search core {info.search_core}")
        expect(info.server_version == __version__, f"server version {info.server_version}")
        expect(info.policy_version == policy_version(first_text), "not the ConfigMap's policy")
        policy = info.policies[0].name
        checks = client.check(policy, list(EXPECTED))
        expect(len(checks) == len(EXPECTED), f"CheckRegion answered {len(checks)} verdicts")
        try:
            client.check(ADDED_POLICY, list(EXPECTED))
        except ServerError as exc:
            expect(exc.code == grpc.StatusCode.NOT_FOUND, f"unknown policy: {exc}")
        else:
            raise E2EError(f"policy {ADDED_POLICY} exists before the update")
        try:
            client.reload()
        except ServerError as exc:
            expect(exc.code == grpc.StatusCode.PERMISSION_DENIED, f"Reload: {exc}")
        else:
            raise E2EError("Reload succeeded with admin off")
    log("ok: Lookup, LookupPacked, StreamLookup, CheckRegion, GetInfo; Reload PERMISSION_DENIED")

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://{LOOPBACK}:{rendered.metrics_port}/metrics"
    with opener.open(url, timeout=CALL_TIMEOUT_S) as response:
        metrics = response.read().decode()
    expect("lookupd_" in metrics, f"{url} has no lookupd_ metric")
    log(f"ok: metrics on {url}")

    log("== ConfigMap update, the kubelet's way (..data_tmp renamed over ..data)")
    new_text = first_text.rstrip("\n") + "\n" + ADDED_POLICY_TEXT
    candidate = work / "candidate.yaml"
    candidate.write_text(new_text)
    load_policies(candidate)  # the update itself must be valid, or the test proves nothing
    caller = Caller(rendered.target)
    caller.start()
    try:
        start = time.monotonic()
        files = {**rendered.files, rendered.key: new_text}
        new_dir = update_configmap_volume(rendered.volume_dir, files, rendered.data_dir, 1)
        want = policy_version(new_text)
        deadline = start + RELOAD_TIMEOUT_S
        with Client(rendered.target, timeout_s=CALL_TIMEOUT_S) as client:
            while client.info().policy_version != want:
                expect(time.monotonic() < deadline, f"no new policy after {RELOAD_TIMEOUT_S} s")
                time.sleep(0.25)
            seconds = time.monotonic() - start
            verdicts = list(client.check(ADDED_POLICY, list(EXPECTED)).verdicts)
    finally:
        caller.stop()
    expect(verdicts == [Verdict.ALLOW, Verdict.DENY], f"{ADDED_POLICY}: {verdicts}")
    seen = podman("exec", container, "readlink", f"{mount}/..data").strip()
    expect(seen == new_dir.name, f"{mount}/..data in the container after the update: {seen!r}")
    expect(not caller.failures, f"calls failed during the update: {caller.failures[:3]}")
    figures["policy_update_seen_s"] = round(seconds, 2)
    figures["calls_during_update"] = caller.calls
    log(f"ok: new policy version after {seconds:.2f} s; {caller.calls} calls, none failed")

    log(f"== podman pod stop -t {STOP_TIMEOUT_S} (SIGTERM: drain {rendered.drain_s:g} s)")
    with (
        Client(rendered.target, timeout_s=CALL_TIMEOUT_S) as client,
        grpc.insecure_channel(rendered.target) as health,
    ):
        # Both connections are open before the stop.
        check_answers(client)
        health_status(health, LOOKUP_SERVICE)
        start = time.monotonic()
        stopping = subprocess.Popen(
            ["podman", "pod", "stop", "--time", str(STOP_TIMEOUT_S), pod_id],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if rendered.drain_s >= 2:
                # During the drain health says NOT_SERVING and calls are still answered.
                deadline = start + rendered.drain_s
                status: int = health_pb2.HealthCheckResponse.SERVING
                while status == health_pb2.HealthCheckResponse.SERVING:
                    expect(time.monotonic() < deadline, "still SERVING after the drain")
                    time.sleep(0.1)
                    status = health_status(health, LOOKUP_SERVICE)
                check_answers(client)
                log("ok: NOT_SERVING during the drain, calls still answered")
            _, err = stopping.communicate(timeout=STOP_TIMEOUT_S + 30)
        finally:
            if stopping.poll() is None:
                stopping.kill()
                stopping.wait()
    figures["pod_stop_s"] = round(time.monotonic() - start, 1)
    expect(stopping.returncode == 0, f"podman pod stop: exit {stopping.returncode}: {err}")
    code = podman("inspect", "--format", "{{.State.ExitCode}}", container).strip()
    logs = run(["podman", "logs", container]).stderr
    expect(code == "0", f"the container exited {code}\n{logs[-2000:]}")
    expect("stopped" in json_events(logs), f"no event stopped in the log\n{logs[-2000:]}")
    log(f"ok: stopped in {figures['pod_stop_s']} s, exit 0, log event=stopped")

    log("== podman kube down, volumes removed")
    cleanup.pop_all()
    down()
    left = podman("pod", "ps", "--quiet", "--filter", f"id={pod_id}").split()
    expect(not left, f"pod {pod_id} still there")
    volumes_after = set(podman("volume", "ls", "--format", "{{.Name}}").split())
    expect(volumes_after <= volumes_before, f"volumes left: {volumes_after - volumes_before}")
    log("ok: no pod, no container, no volume left")


# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def work_directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lookupd-e2e.") as name:
        directory = Path(name)
        # The hostPath volume must be readable by uid 10001.
        directory.chmod(0o755)
        yield directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cached",
        action="store_true",
        help="build with the layer cache (the cold build is then not measured)",
    )
    parser.add_argument(
        "--result",
        type=Path,
        default=ROOT / "build" / "e2e" / "result.json",
        help="where to write the figures and the result (JSON)",
    )
    args = parser.parse_args(argv)
    for tool in ("podman", "kubectl"):
        if shutil.which(tool) is None:
            print(f"kube_play: {tool} not found (see the README's Kubernetes section)")
            return 2
    os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
    podman_version = podman("version", "--format", "{{.Client.Version}}").strip()
    figures: dict[str, Any] = {"podman": podman_version, "lookupd": __version__}
    start = time.monotonic()
    try:
        with work_directory() as work, contextlib.ExitStack() as cleanup:
            build_all(work, figures, cold=not args.cached)
            check_image(figures)
            check_read_only(figures, str(os.getpid()))
            kube_play(work, figures, cleanup)
    except E2EError as exc:
        figures["result"] = "failed"
        figures["failure"] = str(exc)
        print(f"FAILED: {exc}", file=sys.stderr)
    except Exception as exc:  # anything unforeseen: recorded too, with where it came from
        figures["result"] = "failed"
        figures["failure"] = repr(exc)
        traceback.print_exc()
        print(f"FAILED: {exc!r}", file=sys.stderr)
    else:
        figures["result"] = "passed"
    figures["total_s"] = round(time.monotonic() - start, 1)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(figures, indent=2) + "\n")
    log(json.dumps(figures, indent=2))
    return 0 if figures["result"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
