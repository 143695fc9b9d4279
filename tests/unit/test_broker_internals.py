"""The private kombu and Celery names workyard relies on exist in the installed versions, and are
used from workers/broker/internals.py only. Imports kombu and Celery; no network."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from workers.broker import internals

ROOT = Path(__file__).resolve().parents[2]
INTERNALS = ROOT / "workers" / "broker" / "internals.py"
# Workyard's own code, where no private kombu or Celery name may appear outside INTERNALS.
PACKAGES = ["workers", "orchestrator", "config", "models", "examples"]
# workyard's own names that happen to equal a private kombu or Celery one (file: names).
OWN_NAMES = {"workers/runtime.py": {"_deliver"}}  # StepRuntime._deliver, unrelated to kombu's


def test_every_private_name_workyard_needs_exists() -> None:
    missing = internals.missing_private_names()
    assert not missing, (
        f"kombu/Celery no longer have {', '.join(missing)}: adapt workers/broker/internals.py "
        "before widening their pins in pyproject.toml"
    )
    internals.check_private_names()


def test_a_missing_name_is_named() -> None:
    required = [
        ("kombu.transport.redis:Channel", "_brpop_read"),
        ("kombu.transport.redis:Channel", "_no_such_method"),
        ("kombu.transport.redis:NoSuchClass", "_brpop_read"),
        ("kombu.no_such_module:Channel", "_brpop_read"),
        ("kombu.transport.redis:Channel", "_expires"),  # assigned in __init__: present
    ]
    assert internals.missing_private_names(required) == [
        "kombu.transport.redis:Channel._no_such_method",
        "kombu.transport.redis:NoSuchClass._brpop_read",
        "kombu.no_such_module:Channel._brpop_read",
    ]
    with pytest.raises(ImportError, match=r"kombu\.transport\.redis:Channel\._no_such_method"):
        internals.check_private_names(required)


def test_every_private_name_the_internals_module_uses_is_required() -> None:
    required = {attribute for _, attribute in internals.REQUIRED_PRIVATE_NAMES}
    used = set()
    for node in ast.walk(ast.parse(INTERNALS.read_text())):
        if isinstance(node, ast.Attribute):
            used.add(node.attr)  # called or read: channel._q_for_pri(...), super()._create_client(...)
        elif isinstance(node, ast.ClassDef):
            used.update(item.name for item in node.body if isinstance(item, ast.FunctionDef))  # overridden
    private = {name for name in used if name.startswith("_") and not name.startswith("__")}
    assert private <= required, f"add to REQUIRED_PRIVATE_NAMES: {sorted(private - required)}"


def test_private_names_are_used_nowhere_but_the_internals_module() -> None:
    names = sorted({a for _, a in internals.REQUIRED_PRIVATE_NAMES if a.startswith("_")})
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == INTERNALS:
                continue
            where = path.relative_to(ROOT).as_posix()
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for name in pattern.findall(line):
                    if name not in OWN_NAMES.get(where, set()):
                        found.append(f"{where}:{number}: {name}")
    assert not found, "use these through workers/broker/internals.py:\n" + "\n".join(found)
