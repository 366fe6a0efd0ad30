"""Fixtures for the FlexVolume tests: a real FlexBridge on a real unix socket in a short
temporary directory, in front of a recording engine."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.flexbridge import FlexBridge
from driver.pods import KubeletOptions
from tests.flexvolume.recording_engine import RecordingEngine


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer. Digits only
    # after the prefix: a random name could contain an option value (say "rw") that a test
    # checks is absent from a log that names the socket path.
    for n in itertools.count():
        path = Path(f"/tmp/kvflex-{os.getpid()}-{n}")
        try:
            path.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def log_file(short_dir: Path) -> Path:
    return short_dir / "flex.log"


@pytest.fixture
def nowhere(short_dir: Path) -> Path:
    """A socket path with no daemon behind it."""
    return short_dir / "no-daemon.sock"


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def socket_path(short_dir: Path) -> Path:
    return short_dir / "run" / "flex.sock"


@pytest.fixture
def bridge(socket_path: Path, engine: RecordingEngine) -> Iterator[FlexBridge]:
    with FlexBridge(socket_path, engine, KubeletOptions()) as running:
        yield running
