"""Every ``extra=`` key the product logs with is safe to put on a LogRecord."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESERVED = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {
    "message",
    "asctime",
}


def _extra_keys(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    found += [
                        (node.lineno, key.value)
                        for key in keyword.value.keys
                        if isinstance(key, ast.Constant) and isinstance(key.value, str)
                    ]
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if "extra" in names:
                found += [
                    (node.lineno, key.value)
                    for key in node.value.keys
                    if isinstance(key, ast.Constant) and isinstance(key.value, str)
                ]
    return found


def test_logging_extra_keys_never_overwrite_logrecord_attributes() -> None:
    """A key like ``created`` or ``name`` in ``extra`` makes logging raise KeyError at run time."""
    # GIVEN every Python module of the product and the local stack
    sources = sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("devstack/**/*.py")])

    # WHEN their literal extra= keys are collected
    clashes = [
        f"{path.relative_to(ROOT)}:{line}: {key}"
        for path in sources
        for line, key in _extra_keys(path)
        if key in RESERVED
    ]

    # THEN none is a LogRecord attribute
    assert sources
    assert clashes == []
