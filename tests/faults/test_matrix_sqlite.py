"""The short fault matrix on SQLite (the embedded default): each fault over 40 sagas, on the
default settings, held to the bar of ``make faults``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.short import SHORT, run_short


@pytest.mark.parametrize("fault", SHORT)
def test_the_stack_holds(fault: str, tmp_path: Path) -> None:
    run_short(fault, "sqlite", tmp_path)
