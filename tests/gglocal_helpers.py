"""Helpers for the stand-in's tests: hand-written recipes, polling, files a component writes.

Plain functions (no fixtures), so test modules import them directly; fixtures are in gglocal_fixtures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gglocal import RestartPolicy

FAST_POLICY = RestartPolicy(max_errors=3, base_delay_s=0.05, max_delay_s=0.1, grace_s=2.0)


def write_recipes(folder: Path, *recipes: dict[str, Any]) -> Path:
    """A recipe dir holding each recipe as ``<name>.json``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for recipe in recipes:
        (folder / f"{recipe['ComponentName']}.json").write_text(json.dumps(recipe))
    return folder


def component(name: str, lifecycle: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A recipe both cores run: one manifest with ``"runtime": "*"``, the lifecycle as given."""
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux", "runtime": "*"}, "Lifecycle": lifecycle}],
        **extra,
    }


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, poll: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def lines(path: Path) -> list[str]:
    """A file's lines, none when it does not exist yet."""
    return path.read_text().splitlines() if path.exists() else []
