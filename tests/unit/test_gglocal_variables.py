"""Recipe variable interpolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gglocal.variables import ComponentPaths, VariableContext, expand

ROOT = Path("/gg")
APP = ComponentPaths(
    "com.example.App",
    ROOT / "packages/artifacts/com.example.App/1.0.0",
    ROOT / "packages/artifacts-unarchived/com.example.App/1.0.0",
    ROOT / "work/com.example.App",
    {"Interval": "5", "Nested": {"a": 1, "b": [True, None]}, "Flag": True, "Num": 3, "sl/ash": "x"},
)
MODEL = ComponentPaths(
    "com.example.Model",
    ROOT / "packages/artifacts/com.example.Model/2.1.0",
    ROOT / "packages/artifacts-unarchived/com.example.Model/2.1.0",
    ROOT / "work/com.example.Model",
    {"ModelName": "resnet"},
)
CONTEXT = VariableContext(APP, ROOT, "thing-1", {"com.example.Model": MODEL})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{artifacts:path}/run.sh", "/gg/packages/artifacts/com.example.App/1.0.0/run.sh"),
        ("{artifacts:decompressedPath}/app", "/gg/packages/artifacts-unarchived/com.example.App/1.0.0/app"),
        ("cd {work:path}", "cd /gg/work/com.example.App"),
        ("{kernel:rootPath}", "/gg"),
        ("--thing {iot:thingName}", "--thing thing-1"),
        ("-i {configuration:/Interval}", "-i 5"),
        ("{configuration:/Nested}", '{"a":1,"b":[true,null]}'),
        ("{configuration:/Nested/b/0}", "true"),
        ("{configuration:/Flag} {configuration:/Num}", "true 3"),
        ("{configuration:/sl~1ash}", "x"),
        (
            "{com.example.Model:artifacts:decompressedPath}/m",
            "/gg/packages/artifacts-unarchived/com.example.Model/2.1.0/m",
        ),
        ("{com.example.Model:configuration:/ModelName}", "resnet"),
        ("{com.example.Model:work:path}", "/gg/work/com.example.Model"),
    ],
)
def test_placeholders_resolve(text: str, expected: str) -> None:
    assert expand(text, CONTEXT) == expected


@pytest.mark.parametrize(
    "text",
    [
        "{configuration:/Missing}",
        "{com.example.NotADependency:artifacts:path}",
        "{com.example.Model:iot:thingName}",
        "{unknown:thing}",
        "${HOME} ${VAR:-default} {a,b}",
        'python3 -c "print({1: 2})"',
    ],
)
def test_unresolvable_text_is_left_alone(text: str) -> None:
    assert expand(text, CONTEXT) == text
