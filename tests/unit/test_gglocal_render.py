"""Scripts as each core renders them: nucleus lite's exports, escaping, trailing slashes and cut-off at an
unhandled variable (run through a real sh), the Java nucleus's substitution and change detection."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from gglocal.lifecycle import parse_lifecycle
from gglocal.render import render_classic, render_lite
from gglocal.variables import ComponentPaths, VariableContext

ROOT = Path("/gg")
TRICKY = 'a "quoted" $HOME \\ `date`'


def context(configuration: dict[str, Any]) -> VariableContext:
    paths = ComponentPaths(
        "com.example.R",
        ROOT / "packages/artifacts/com.example.R/1.0.0",
        ROOT / "packages/artifacts-unarchived/com.example.R/1.0.0",
        ROOT / "work/com.example.R",
        configuration,
    )
    other = ComponentPaths("com.example.Dep", ROOT / "a", ROOT / "u", ROOT / "w", {"K": "dep"})
    return VariableContext(paths, ROOT, "thing-1", {"com.example.Dep": other})


def sh(script: str) -> str:
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=False, timeout=10
    ).stdout


def test_lite_escapes_substituted_values_for_double_quotes_and_passes_setenv_intact() -> None:
    lifecycle = parse_lifecycle(
        {
            "Setenv": {"FROM_SETENV": "{configuration:/Value}", "QUOTE": "it's {configuration:/Value}"},
            "run": 'printf "%s|" "{configuration:/Value}" \'{configuration:/Value}\' "$FROM_SETENV" "$QUOTE"',
        },
        exact=True,
    )
    rendered = render_lite(lifecycle, "Run", context({"Value": TRICKY}))
    assert rendered.script.startswith("#!/bin/sh\nexport FROM_SETENV='")
    assert rendered.setenv == {}
    double, single, setenv, quote, _ = sh(rendered.script).split("|")
    assert double == TRICKY  # escaped for double quotes: right inside them
    assert single == 'a \\"quoted\\" \\$HOME \\\\ \\`date\\`'  # and changed inside single quotes
    assert setenv == TRICKY
    assert quote == "it's " + TRICKY


def test_lite_paths_end_with_a_slash_and_classic_ones_do_not() -> None:
    raw = {
        "run": "echo {work:path} {artifacts:path} {artifacts:decompressedPath} "
        "{kernel:rootPath} {iot:thingName}"
    }
    lite = render_lite(parse_lifecycle(raw, exact=True), "Run", context({})).script
    classic = render_classic(parse_lifecycle(raw), context({})).step("Run").script
    assert lite.endswith(
        "echo /gg/work/com.example.R/ /gg/packages/artifacts/com.example.R/1.0.0/ "
        "/gg/packages/artifacts-unarchived/com.example.R/1.0.0/ /gg thing-1"
    )
    assert classic == (
        "echo /gg/work/com.example.R /gg/packages/artifacts/com.example.R/1.0.0 "
        "/gg/packages/artifacts-unarchived/com.example.R/1.0.0 /gg thing-1"
    )


def test_lite_cuts_the_script_off_at_a_variable_it_cannot_substitute() -> None:
    raw = {"run": "echo before; echo '{com.example.Dep:configuration:/K}'; echo after"}
    lite = render_lite(parse_lifecycle(raw, exact=True), "Run", context({})).script
    assert lite == "#!/bin/sh\necho before; echo '"
    result = subprocess.run(["sh", "-c", lite], capture_output=True, text=True, check=False, timeout=10)
    assert result.stdout == "" and result.returncode != 0  # sh: Unterminated quoted string
    classic = render_classic(parse_lifecycle(raw), context({})).step("Run").script
    assert classic == "echo before; echo 'dep'; echo after"
    missing = render_lite(
        parse_lifecycle({"run": "a {configuration:/Nope} b"}, exact=True), "Run", context({})
    )
    assert missing.script == "#!/bin/sh\na "
    shell = render_lite(parse_lifecycle({"run": "echo ${HOME} x"}, exact=True), "Run", context({}))
    assert shell.script == "#!/bin/sh\necho $"


def test_lite_startup_scripts_end_with_lites_notify_lines() -> None:
    script = render_lite(parse_lifecycle({"startup": "false"}, exact=True), "Startup", context({})).script
    assert script.startswith("#!/bin/sh\nfalse\n")
    assert subprocess.run(["sh", "-c", script], check=False, timeout=10).returncode == 0


def test_classic_renders_setenv_into_the_environment_and_reports_what_changed() -> None:
    raw = {
        "Setenv": {"TOPIC": "{configuration:/Topic}"},
        "Install": "pip install {configuration:/Package}",
        "Run": {"Script": "run {missing:thing}", "Setenv": {"LEVEL": "{configuration:/Level}"}},
        "Shutdown": "stop {configuration:/Grace}",
    }
    lifecycle = parse_lifecycle(raw)
    config = {"Topic": "t", "Package": "p", "Level": "1", "Grace": "5"}
    before = render_classic(lifecycle, context(config))
    assert before.step("Run").setenv == {"TOPIC": "t", "LEVEL": "1"}
    assert before.step("Run").script == "run {missing:thing}"
    assert render_classic(lifecycle, context(config)).changed(before) == set()
    assert render_classic(lifecycle, context({**config, "Level": "2"})).changed(before) == {"Run"}
    assert render_classic(lifecycle, context({**config, "Topic": "u"})).changed(before) == {"Setenv"}
    assert render_classic(lifecycle, context({**config, "Package": "q"})).changed(before) == {"Install"}
    assert render_classic(lifecycle, context({**config, "Grace": "9"})).changed(before) == {"Shutdown"}
