"""The Dockerfile, exercised without a container engine.

The build stage's COPY and `pip wheel` steps run here on a build context filtered by
.dockerignore; the runtime stage's install and uninstall steps run in a fresh virtual
environment; then the image's ENTRYPOINT runs with --help. Dependencies come from the package
index, as they do in `docker build`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = {"grpcio-tools", "mypy", "mypy-protobuf", "pytest", "ruff", "build", "hypothesis"}
BUILD_TOOLS = {"setuptools", "wheel", "pip"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, verb: str) -> list[str]:
        return [arg for v, arg in self.instructions if v == verb]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        verb, _, rest = line.partition(" ")
        verb, rest = verb.upper(), rest.strip()
        if verb == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        elif not stages:
            assert verb == "ARG", f"{verb} before the first FROM"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((verb, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((REPO / "Dockerfile").read_text())[1]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, p) for p in prefixes):
            excluded = not negate
    return excluded


def build_context(dest: Path) -> Path:
    """The files `docker build .` sends, per .dockerignore."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for top, dirnames, filenames in os.walk(REPO):
        # Never part of the context, and large: not worth walking.
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv")]
        for filename in filenames:
            path = Path(top) / filename
            rel = path.relative_to(REPO).as_posix()
            if not dockerignore_excludes(patterns, rel):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / rel)
    return dest


def run_copies(stage: Stage, context: Path, root: Path) -> None:
    """The stage's context COPY instructions, into a directory standing for its filesystem."""
    workdir = "/"
    for verb, arg in stage.instructions:
        if verb == "WORKDIR":
            workdir = arg
        if verb != "COPY":
            continue
        words = shlex.split(arg)
        assert not any(w.startswith("--from") for w in words), "build stage copies the context only"
        *sources, target = [w for w in words if not w.startswith("--")]
        base = root / (target if target.startswith("/") else f"{workdir}/{target}").lstrip("/")
        for source in sources:
            src = context / source
            assert src.exists(), f"COPY {source}: not in the build context"
            if src.is_dir():
                shutil.copytree(src, base, dirs_exist_ok=True)
            else:
                base.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, base / src.name)


def run(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, f"{shlex.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def wheel(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = stages[0]
    (wheel_step,) = [r for r in build.all("RUN") if "pip wheel" in r]
    assert "--no-deps" in wheel_step
    tmp = tmp_path_factory.mktemp("image")
    context = build_context(tmp / "context")
    run_copies(build, context, tmp / "build-fs")
    src = tmp / "build-fs" / build.all("WORKDIR")[0].lstrip("/")
    out = tmp / "wheels"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-cache-dir",
            "--no-deps",
            "--wheel-dir",
            str(out),
            ".",
        ],
        cwd=src,
    )
    (built,) = out.glob("*.whl")
    return built


def pip_wheel(project: Path, out: Path) -> Path:
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "-w", str(out), "."],
        cwd=project,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository as a fresh clone has it: no build leftovers a wheel build could pick up."""
    dest = tmp_path_factory.mktemp("checkout") / "repo"
    leftovers = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
    )
    shutil.copytree(REPO, dest, ignore=leftovers)
    return dest


@pytest.fixture(scope="module")
def runtime_wheel(checkout: Path) -> Path:
    """`pip wheel .` at the repository root: the product's runtime wheel."""
    return pip_wheel(checkout, checkout.parent / "runtime-wheel")


def entry_points(wheel: Path) -> str:
    archive = zipfile.ZipFile(wheel)
    (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    return archive.read(name).decode()


def test_runtime_wheel_holds_the_product_and_no_dev_code(runtime_wheel: Path) -> None:
    names = set(zipfile.ZipFile(runtime_wheel).namelist())
    assert {"driver/__main__.py", "driver/csi/proto/csi_pb2.py", "flexvolume/__init__.py"} <= names
    assert {"flexvolume/azure~kv/kv", "flexvolume/install.sh"} <= names
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top <= {"driver", "flexvolume", "podidentity", "kube", "azcommon"}, top
    assert not [n for n in names if n.split("/")[0] in ("devstack", "tools", "bench", "tests")]
    assert not [n for n in names if n.endswith("protogen.py")]
    scripts = entry_points(runtime_wheel)
    assert "kv-csi-driver = driver.__main__:main" in scripts
    assert "kv-devstack" not in scripts and "devstack" not in scripts


def test_image_wheel_is_the_runtime_wheel(wheel: Path, runtime_wheel: Path) -> None:
    # Every product package reaches the build stage (Dockerfile COPY and .dockerignore).
    built_in_image = set(zipfile.ZipFile(wheel).namelist())
    assert built_in_image == set(zipfile.ZipFile(runtime_wheel).namelist())


def test_devstack_is_its_own_dev_distribution(checkout: Path) -> None:
    dev_wheel = pip_wheel(checkout / "dev", checkout.parent / "dev-wheel")
    names = set(zipfile.ZipFile(dev_wheel).namelist())
    assert {
        "devstack/__main__.py",
        "devstack/default_seed.yaml",
        "devstack/keyvault/app.py",
    } <= names
    assert not [n for n in names if n.startswith(("driver/", "flexvolume/", "tools/"))]
    assert "kv-devstack = devstack.__main__:main" in entry_points(dev_wheel)


@pytest.fixture(scope="module")
def runtime(stages: list[Stage], wheel: Path) -> Path:
    """A fresh virtual environment that went through the runtime stage's RUN steps."""
    final = stages[-1]
    (step,) = final.all("RUN")
    assert "pip install --no-cache-dir /wheels/*.whl" in step
    uninstalled = re.search(r"pip uninstall --yes ([\w\s-]+?)(?:$|&&)", step)
    assert uninstalled, step
    venv = wheel.parent.parent / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--no-cache-dir", "--no-compile", str(wheel)])
    run([python, "-m", "pip", "uninstall", "--yes", *uninstalled.group(1).split()])
    return venv


def test_wheel_carries_the_shim_installer_and_generated_code(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "flexvolume/azure~kv/kv" in names
    assert "flexvolume/install.sh" in names
    assert {"driver/__main__.py", "driver/config.py"} <= names
    protos = {n for n in names if fnmatch.fnmatch(n, "driver/csi/proto/*_pb2.py")}
    assert len(protos) >= 2, names  # the CSI spec and kubelet plugin registration
    assert not [n for n in names if n.startswith("tests/")]


def test_image_copies_of_the_flexvolume_files_are_the_packaged_ones(
    stages: list[Stage], wheel: Path
) -> None:
    final = stages[-1]
    copies = [shlex.split(c) for c in final.all("COPY")]
    placed = {words[-1]: words[-2] for words in copies if "--from=build" in words}
    assert placed == {
        "/opt/kv-driver/flexvolume/install.sh": "/src/flexvolume/install.sh",
        "/opt/kv-driver/flexvolume/azure~kv/kv": "/src/flexvolume/azure~kv/kv",
    }
    packaged = zipfile.ZipFile(wheel)
    for src in placed.values():
        rel = src.removeprefix("/src/")
        assert packaged.read(rel) == (REPO / rel).read_bytes()
    assert all("--chmod=0755" in words for words in copies if "--from=build" in words)


def test_the_image_entrypoint_runs_from_the_installed_wheel(
    stages: list[Stage], runtime: Path
) -> None:
    (entrypoint,) = stages[-1].all("ENTRYPOINT")
    (command,) = json.loads(entrypoint)
    assert command == "kv-csi-driver"
    out = run([str(runtime / "bin" / command), "--help"], cwd=runtime)
    for flag in ("--endpoint", "--kubelet-registration-path", "--flexvolume-socket", "--state-dir"):
        assert flag in out.stdout


def test_runtime_carries_no_build_or_dev_tools(runtime: Path) -> None:
    out = run(
        [
            str(runtime / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))",
        ]
    )
    installed = {re.sub(r"[-_.]+", "-", n).lower() for n in out.stdout.split()}
    assert "kv-driver" in installed
    assert not installed & (DEV_ONLY | BUILD_TOOLS)


def test_final_stage_is_slim_and_labelled(stages: list[Stage]) -> None:
    build, final = stages[0], stages[-1]
    assert len(stages) == 2
    assert build.name == "build" and final.name == "runtime"
    assert final.base == build.base
    image, _, tag = final.base.rpartition(":")
    assert image == "python" and tag.endswith("-slim-bookworm") and tag[0].isdigit()
    text = " ".join(arg for _, arg in final.instructions)
    for forbidden in (
        "gcc",
        "build-essential",
        "[dev]",
        "grpcio-tools",
        "python -m build",
    ):
        assert forbidden not in text
    # Debian packages: only what runs (iptables, for kv-nmi's nat rules), no recommends, and the
    # package lists removed in the same step.
    installed = re.findall(
        r"apt-get install --yes --no-install-recommends ([\w\s.+-]+?)(?:&&|$)", text
    )
    assert [p.split() for p in installed] == [["iptables"]]
    assert text.count("apt-get install") == 1 and "rm -rf /var/lib/apt/lists/*" in text
    assert not [v for s in stages for v, _ in s.instructions if v == "HEALTHCHECK"]
    labels = " ".join(final.all("LABEL"))
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_installer_daemonset_installs_the_shim_from_the_image_layout(
    stages: list[Stage], tmp_path: Path
) -> None:
    # Lay out the image's /opt/kv-driver as the final stage's COPY --from=build lines do.
    image_root = tmp_path / "image"
    for words in (shlex.split(c) for c in stages[-1].all("COPY")):
        if "--from=build" in words:
            dest = image_root / words[-1].lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / words[-2].removeprefix("/src/"), dest)
            dest.chmod(0o755)
    # Run the installer container's command with its environment, the host dir standing in
    # for the hostPath, and KEEP_RUNNING off so it returns.
    docs = list(yaml.safe_load_all((REPO / "deploy/driver/flexvolume-installer.yaml").read_text()))
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    host_dir = tmp_path / "volumeplugins"
    env = {e["name"]: e["value"] for e in container["env"]}
    env |= {"TARGET_DIR": str(host_dir), "KEEP_RUNNING": "false", "PATH": "/usr/bin:/bin"}
    assert env["HOST_ROOT"] == "/host"  # the host's /usr is mounted there: python3 is checked
    env["HOST_ROOT"] = "/"  # this machine stands in for the node
    *interpreter, script = container["command"]
    out = run([*interpreter, str(image_root / script.lstrip("/"))], env=env)
    installed = host_dir / "azure~kv" / "kv"
    assert installed.read_bytes() == (REPO / "flexvolume/azure~kv/kv").read_bytes(), out.stdout
    assert installed.stat().st_mode & 0o777 == 0o755


def test_build_context_holds_only_what_the_wheel_is_built_from(tmp_path: Path) -> None:
    context = build_context(tmp_path / "context")
    top = {p.name for p in context.iterdir()}
    assert top == {
        "pyproject.toml",
        "README.md",
        "driver",
        "azcommon",
        "kube",
        "podidentity",
        "flexvolume",
    }
    assert not list(context.rglob("__pycache__"))
