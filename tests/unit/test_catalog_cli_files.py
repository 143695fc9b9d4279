"""``workyard catalog``'s files: YAML reads an unquoted date or timestamp as a date object, which
the API (JSON) cannot take; the CLI sends them as ISO 8601 text."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.cli.item_templates import _mapping


def test_unquoted_dates_and_timestamps_are_sent_as_iso_text(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "day: 2026-12-06\nwindow: {start: 2026-12-06T01:00:00Z, end: 2026-12-06T03:00:00Z}\nn: [1, 2026-01-01]\n"
    )
    loaded = _mapping(params, "parameters")
    assert loaded == {
        "day": "2026-12-06",
        "window": {"start": "2026-12-06T01:00:00+00:00", "end": "2026-12-06T03:00:00+00:00"},
        "n": [1, "2026-01-01"],
    }
    json.dumps(loaded)  # what httpx does with it
