"""Regenerate the committed Python code for the protobuf definitions in protos/.

Run as ``python -m tools.protogen [--out DIR]`` (``make proto``) from the repository root; a
dev tool, never in the wheel. Each group of ``.proto`` files has its own package: the CSI spec
and kubelet's plugin registration go to ``DIR/driver/csi/proto/``, the secrets-store provider
API to ``DIR/driver/provider/proto/`` (DIR defaults to the repository root): ``*_pb2.py``,
``*_pb2_grpc.py`` and mypy-protobuf ``.pyi`` stubs for each ``.proto`` file.

protoc's virtual path mapping (``-Idriver/csi/proto=protos``) makes each ``.proto`` live at
``driver/csi/proto/<name>.proto`` as far as protoc is concerned, so the generated modules
import one another package-absolutely (``from driver.csi.proto import csi_pb2``) with no
hand edits. protoc runs once per group, so one group's mapping never shadows another's. Output
depends only on the inputs and the pinned tool versions.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProtoGroup:
    """Proto files generated together into one Python package."""

    package_dir: str  # where the modules go, relative to the output root
    source_dir: str  # where the .proto files are, relative to protos/ ("" for protos/ itself)
    files: tuple[str, ...]


GROUPS = (
    ProtoGroup("driver/csi/proto", "", ("csi.proto", "pluginregistration.proto")),
    ProtoGroup("driver/provider/proto", "secrets-store/v1alpha1", ("service.proto",)),
)
PACKAGE_DIR = GROUPS[0].package_dir
PROTO_FILES = GROUPS[0].files


class ProtogenError(RuntimeError):
    """Code generation could not run or protoc reported an error."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def generated_names(group: ProtoGroup = GROUPS[0]) -> list[str]:
    """File names (inside the group's package directory) that one run writes, sorted."""
    names: list[str] = []
    for proto in group.files:
        stem = proto.removesuffix(".proto")
        names += [
            f"{stem}_pb2.py",
            f"{stem}_pb2.pyi",
            f"{stem}_pb2_grpc.py",
            f"{stem}_pb2_grpc.pyi",
        ]
    return sorted(names)


def _plugin(name: str) -> Path:
    # The plugins are console scripts of mypy-protobuf, installed beside this interpreter.
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise ProtogenError(
            f"{name} not found next to {sys.executable} or on PATH; install mypy-protobuf"
        )
    return Path(found)


def generate(out: Path, protos_dir: Path | None = None) -> list[Path]:
    """Write the generated files for every proto group in ``protos_dir`` under ``out``.

    Returns the paths written. Raises ProtogenError when protoc fails.
    """
    # Imported here so that importing this module (e.g. by the tests) costs nothing; via
    # importlib because grpc_tools ships no type information.
    protoc = importlib.import_module("grpc_tools.protoc")

    protos = (protos_dir or repo_root() / "protos").resolve()
    out = out.resolve()
    if protoc.__file__ is None:
        raise ProtogenError("grpc_tools.protoc has no file location; reinstall grpcio-tools")
    # The well-known types (descriptor.proto, wrappers.proto, ...) ship inside grpcio-tools.
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    written: list[Path] = []
    for group in GROUPS:
        source = protos / group.source_dir if group.source_dir else protos
        (out / group.package_dir).mkdir(parents=True, exist_ok=True)
        args = [
            "grpc_tools.protoc",
            f"-I{group.package_dir}={source}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            *(str(source / name) for name in group.files),
        ]
        code = protoc.main(args)
        if code != 0:
            raise ProtogenError(
                f"protoc exited with status {code} for {', '.join(group.files)} in {source}"
            )
        written += [out / group.package_dir / name for name in generated_names(group)]
    missing = [str(path) for path in written if not path.is_file()]
    if missing:
        raise ProtogenError(f"protoc did not write {', '.join(missing)}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.protogen", description=__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=repo_root(),
        help="root of the output tree; files go to OUT/driver/csi/proto and OUT/driver/provider/proto"
        " (default: repository root)",
    )
    options = parser.parse_args(argv)
    try:
        written = generate(options.out)
    except ProtogenError as exc:
        print(f"protogen: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
