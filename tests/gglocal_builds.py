"""Small hand-written component builds for the stand-in's tests, the access policies they need, and a poll.

``write_component(build, "com.example.X", {"Run": "..."}, script="print(1)")`` writes a GDK-style build dir
(``recipes/`` and ``artifacts/<name>/<version>/main.py``; ``{artifacts:path}/main.py`` runs the script).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

VERSION = "1.0.0"


def publish_access(*resources: str) -> dict[str, Any]:
    """A component configuration allowing PublishToIoTCore to ``resources``."""
    operations = ["aws.greengrass#PublishToIoTCore"]
    policy = {"p": {"operations": operations, "resources": list(resources)}}
    return {"accessControl": {"aws.greengrass.ipc.mqttproxy": policy}}


def write_component(
    build: Path,
    name: str,
    lifecycle: Mapping[str, Any],
    *,
    script: str | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> None:
    """Add one component (Linux manifest) to the build dir ``build``."""
    (build / "recipes").mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"Platform": {"os": "linux"}, "Lifecycle": dict(lifecycle)}
    if script is not None:
        artifacts = build / "artifacts" / name / VERSION
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "main.py").write_text(script)
        manifest["Artifacts"] = [{"URI": "s3://bucket/main.py"}]
    recipe: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": VERSION,
        "Manifests": [manifest],
    }
    if configuration is not None:
        recipe["ComponentConfiguration"] = {"DefaultConfiguration": dict(configuration)}
    (build / "recipes" / f"{name}.json").write_text(json.dumps(recipe))


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    """Poll ``predicate`` every 20 ms until it is true or ``timeout`` passes; its last truth."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
