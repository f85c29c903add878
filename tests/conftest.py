"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devstack.azurite import Azurite, start_azurite

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the test session; tests isolate themselves by unique names and ids."""
    emulator = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real-world test input; tests that need it skip where it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data not present at {REALDATA}")
    return REALDATA
