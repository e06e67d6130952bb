"""Fixtures shared by the tests of several packages."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in its own ``tmp_path``: the default logger writes to ``./runs``, and in-process
    ``silhouette-fit`` calls would otherwise leave their run folders in the current folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``tmpfs(name, options)`` mounts a tmpfs with mount ``options`` (``size=1m``, ``size=1m,ro``) at
    ``tmp_path / name``: a real file system that runs full or refuses writes. Skips the test where this
    process may not mount; everything mounted is unmounted after the test."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        mountpoint = tmp_path / name
        mountpoint.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], capture_output=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({options}) here: {result.stderr.decode().strip()}")
        mounted.append(mountpoint)
        return mountpoint

    yield mount
    for mountpoint in reversed(mounted):
        subprocess.run(["umount", str(mountpoint)], check=False)
