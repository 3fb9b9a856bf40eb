"""The recipe rules of each Greengrass core, written down once, each with a name.

`check_recipe(recipe, size, core)` lists what `core` ("lite" or "classic") would refuse or do differently
with a recipe (a parsed JSON/YAML document of `size` bytes), as `Violation`s naming their rule. build.py
checks every recipe against both cores and fails naming the rule; gglocal refuses, per profile, what its core
refuses. Sources: shared/reference/greengrass-real-cores.md (nucleus lite 2.6.0, measured) and the Java
nucleus's public source (aws-greengrass-nucleus, aws-greengrass-component-common).

Nucleus lite:
- `lite-platform-runtime`: a manifest whose Platform has no `runtime` of "*" or "aws_nucleus_lite" is skipped
  ("Skipping manifest as it does not include a runtime platform field").
- `lite-lifecycle-keys`: lifecycle keys are read case-sensitively: `install`, `run`, `startup`, `shutdown`
  and `Setenv`; any other spelling is ignored ("Recipes without at least 1 valid lifecycle step ...").
- `lite-lifecycle-step`: a component needs at least one of install, run, startup (also one with artifacts
  only: "Lifecycle with no phase is not supported"). The lifecycle read is the manifest's own when it is a
  non-empty object, else the global `Lifecycle` under the manifest's `Selections` ("all" or "linux" only).
- `lite-unsupported-phase`: `shutdown` is read but never run ("'shutdown' phase isn't currently supported by
  Greengrass nucleus lite"); the component is stopped by SIGTERM alone.
- `lite-skipif`: `Skipif` is not read; the step always runs.
- `lite-cross-component-variable`: `{Other.Component:...}` is not substituted ("Unhandled variable
  substitution"): the script is cut off there and what came before it runs.
- `lite-unhandled-variable`: any other `{...}` lite cannot substitute (it opens a variable at every `{`, so
  `${VAR}` or `{1: 2}` in a script too) cuts the script off the same way.
- `lite-configuration-in-script`: a `{configuration:...}` value substituted into a script is escaped for
  double quotes (`\\"`, `\\$`), so a value holding `"`, `$`, `\\` or a backtick arrives changed; Setenv values
  are passed intact, so configuration reaches scripts through Setenv.
- `lite-recipe-size`: a recipe file is read into an 8,196-byte buffer ("Insufficient memory for file").

The Java nucleus ("classic"):
- `classic-platform-value`: a Platform value is "*" (anything, a missing attribute included), "/regex/", or
  a label starting with a letter or digit; anything else never matches (component-common PlatformHelper).
  So `"runtime": "*"` selects the manifest on the Java nucleus too.
- `classic-run-and-startup`: a lifecycle has Run or Startup, not both (keys read case-insensitively).
- `classic-cross-component-variable`: `{Other.Component:...}` resolves for direct dependencies only, and
  only for artifacts, work and configuration.
- `cloud-recipe-size`: GDK and CreateComponentVersion take recipes up to 16,000 bytes.

Rules in `REFUSING_RULES` make the core refuse the recipe (the deployment fails); the others say what it
does differently. `lite_select` is nucleus lite's manifest choice and `classic_platform_matches` the Java
nucleus's platform match, written down once for gglocal and the checks here.

Both:
- `fixed-root`: a script path that assumes a root folder (`/greengrass/v2` is the Java nucleus's default,
  `/var/lib/greengrass` lite's); use `{kernel:rootPath}`, `{work:path}` or `{artifacts:...}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .variables import CROSS_NAMESPACES, Variable, lite_parts, variables_in

CORES = ("lite", "classic")
LITE_RECIPE_BYTES = 8196
CLOUD_RECIPE_BYTES = 16000
LITE_RUNTIMES = ("*", "aws_nucleus_lite")
LITE_STEPS = ("install", "run", "startup", "shutdown")
LITE_LIFECYCLE_KEYS = (*LITE_STEPS, "Setenv")
LITE_SELECTIONS = ("all", "linux")
LITE_OS = ("linux", "*", "all")
REFUSING_RULES = frozenset(
    {"lite-recipe-size", "lite-lifecycle-step", "classic-run-and-startup", "cloud-recipe-size"}
)
FIXED_ROOTS = ("/greengrass/v2", "/var/lib/greengrass")
_SIMPLE_LABEL = re.compile(r"^[a-zA-Z0-9]")


@dataclass(frozen=True)
class Violation:
    """One rule of one core that a recipe breaks."""

    core: str
    rule: str
    where: str
    message: str
    manifest: int | None = None  # the manifest it concerns; None for the whole recipe

    @property
    def refuses(self) -> bool:
        """Whether the core refuses the recipe for this (when it concerns the manifest the core selects)."""
        return self.rule in REFUSING_RULES

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.core}: {self.rule}]"


@dataclass(frozen=True)
class LiteSelection:
    """The manifest nucleus lite runs for a recipe on this architecture (``index`` None: none), the lifecycle
    it reads from it, and what lite logged on the way, in its own words."""

    index: int | None
    lifecycle: Mapping[str, Any]
    notes: tuple[str, ...] = ()


def _ci(mapping: Any, key: str) -> Any:
    """A case-insensitive lookup, as the Java nucleus reads recipes."""
    if not isinstance(mapping, Mapping):
        return None
    for name, value in mapping.items():
        if str(name).lower() == key.lower():
            return value
    return None


def manifests(recipe: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = _ci(recipe, "Manifests")
    return [m for m in found if isinstance(m, Mapping)] if isinstance(found, list) else []


def lite_selects(manifest: Mapping[str, Any]) -> bool:
    """Whether nucleus lite considers the manifest at all (it skips those without a runtime it runs)."""
    platform = manifest.get("Platform")
    return isinstance(platform, Mapping) and platform.get("runtime") in LITE_RUNTIMES


def lite_lifecycle(recipe: Mapping[str, Any], manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The lifecycle nucleus lite reads for a manifest: its own when a non-empty object, else the global
    ``Lifecycle`` entry under ``Selections`` (only "all" and "linux" count; the last one present wins)."""
    own = manifest.get("Lifecycle")
    if isinstance(own, Mapping) and own:
        return own
    selections = manifest.get("Selections")
    chosen = [s for s in selections if isinstance(s, str)] if isinstance(selections, list) else []
    found = None
    glob = recipe.get("Lifecycle")
    glob = glob if isinstance(glob, Mapping) else {}
    for selection in chosen or ["all"]:
        if selection in LITE_SELECTIONS and isinstance(glob.get(selection), Mapping):
            found = glob[selection]
    return found


def lite_select(recipe: Mapping[str, Any], architecture: str) -> LiteSelection:
    """Nucleus lite's manifest choice (``select_linux_lifecycle``): the first manifest with a runtime it runs,
    ``os`` linux, * or all, ``architecture`` absent, * or this one (no regexes), and a lifecycle."""
    found = recipe.get("Manifests")
    if not isinstance(found, list):
        return LiteSelection(None, {}, ("No Manifest found in the recipe",))
    notes: list[str] = []
    for index, manifest in enumerate(found):
        platform = manifest.get("Platform") if isinstance(manifest, Mapping) else None
        if not isinstance(platform, Mapping):
            return LiteSelection(None, {}, (*notes, f"Manifests[{index}]: Platform not provided"))
        if "runtime" not in platform:
            notes.append(
                f"Manifests[{index}]: Skipping manifest as it does not include a runtime platform field."
            )
            continue
        if platform["runtime"] not in LITE_RUNTIMES:
            notes.append(f"Manifests[{index}]: Skipping manifest as it is not for aws_nucleus_lite")
            continue
        arch = platform.get("architecture") or ""
        if platform.get("os") not in LITE_OS or arch not in ("", "*", architecture):
            continue
        lifecycle = lite_lifecycle(recipe, manifest)
        if lifecycle is not None:
            return LiteSelection(index, lifecycle, tuple(notes))
    return LiteSelection(None, {}, (*notes, "No lifecycle was found for linux"))


def classic_value_matches(pattern: str, value: str | None) -> bool:
    """One Platform value against the device's (component-common PlatformHelper): "*" matches anything, a
    missing attribute included; "/regex/" a full match; a label starting with a letter or digit the same
    value, case-insensitively; anything else never matches."""
    if pattern == "*":
        return True
    if value is None:
        return False
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        try:
            return re.fullmatch(pattern[1:-1], value) is not None
        except re.error:
            return False
    return bool(_SIMPLE_LABEL.match(pattern)) and pattern.lower() == value.lower()


def classic_platform_matches(platform: Mapping[str, Any], device: Mapping[str, str]) -> bool:
    """Whether every attribute of a manifest's Platform matches the device (attribute names any case)."""
    lowered = {k.lower(): v for k, v in device.items()}
    return all(classic_value_matches(str(v), lowered.get(str(k).lower())) for k, v in platform.items())


def strings_in(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every string in a JSON document, ``where`` extended as ``a.b[2]``."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from strings_in(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from strings_in(item, f"{where}[{index}]")


def _scripts(lifecycle: Mapping[str, Any], where: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every script of a lifecycle, Setenv values excluded."""
    for step, body in lifecycle.items():
        if str(step).lower() == "setenv":
            continue
        if isinstance(body, Mapping):
            for key, value in body.items():
                if str(key).lower() != "setenv":
                    yield from strings_in(value, f"{where}.{step}.{key}")
        else:
            yield from strings_in(body, f"{where}.{step}")


def _lite_variables(text: str, here: str, in_script: bool) -> Iterator[tuple[str, str, str]]:
    for part in lite_parts(text):
        if not part.variable:
            continue
        if not part.substitutable:
            cross = next(iter(variables_in("{" + part.text + "}")), None) if part.closed else None
            if isinstance(cross, Variable) and cross.component is not None:
                rule, what = "lite-cross-component-variable", "another component's variables"
            else:
                rule, what = "lite-unhandled-variable", "this"
            yield (
                rule,
                here,
                f"{{{part.text}}}: nucleus lite does not substitute {what}; the script is cut off here "
                "(Unhandled variable substitution)",
            )
        elif in_script and part.namespace == "configuration":
            yield (
                "lite-configuration-in-script",
                here,
                f"{{{part.text}}}: nucleus lite escapes substituted values for double quotes; pass "
                "configuration through Setenv, which it leaves intact",
            )


def _lite(recipe: Mapping[str, Any], size: int) -> Iterator[tuple[str, str, str, int | None]]:
    if size > LITE_RECIPE_BYTES:
        yield (
            "lite-recipe-size",
            "recipe",
            f"is {size} bytes; nucleus lite reads at most {LITE_RECIPE_BYTES} (Insufficient memory for file)",
            None,
        )
    for index, manifest in enumerate(manifests(recipe)):
        where = f"Manifests[{index}]"
        if not lite_selects(manifest):
            yield (
                "lite-platform-runtime",
                f"{where}.Platform",
                'needs "runtime": "*" (or "aws_nucleus_lite"); without it nucleus lite skips the manifest',
                index,
            )
        lifecycle = lite_lifecycle(recipe, manifest) or {}
        for key in lifecycle:
            if key not in LITE_LIFECYCLE_KEYS:
                yield (
                    "lite-lifecycle-keys",
                    f"{where}.Lifecycle.{key}",
                    f"is ignored by nucleus lite, which reads only {', '.join(LITE_LIFECYCLE_KEYS)} as "
                    "written",
                    index,
                )
        if "shutdown" in lifecycle:
            yield (
                "lite-unsupported-phase",
                f"{where}.Lifecycle.shutdown",
                "is never run: 'shutdown' phase isn't currently supported by Greengrass nucleus lite",
                index,
            )
        if not any(step in lifecycle for step in ("install", "run", "startup")):
            yield (
                "lite-lifecycle-step",
                f"{where}.Lifecycle",
                "has no install, run or startup step; nucleus lite refuses a component without one",
                index,
            )
        for step in LITE_STEPS:
            body = lifecycle.get(step)
            if isinstance(body, Mapping) and "Skipif" in body:
                yield "lite-skipif", f"{where}.Lifecycle.{step}.Skipif", "is not read by nucleus lite", index
        for here, text, in_script in _lite_texts(lifecycle, f"{where}.Lifecycle"):
            for rule, spot, message in _lite_variables(text, here, in_script):
                yield rule, spot, message, index


def _lite_texts(lifecycle: Mapping[str, Any], where: str) -> Iterator[tuple[str, str, bool]]:
    """(where, text, is a script) of what nucleus lite substitutes in: step scripts and Setenv values."""
    setenvs = [(f"{where}.Setenv", lifecycle.get("Setenv"))]
    for step in LITE_STEPS:
        body = lifecycle.get(step)
        if isinstance(body, str):
            yield f"{where}.{step}", body, True
        elif isinstance(body, Mapping):
            if isinstance(body.get("Script"), str):
                yield f"{where}.{step}.Script", body["Script"], True
            setenvs.append((f"{where}.{step}.Setenv", body.get("Setenv")))
    for place, setenv in setenvs:
        for key, value in setenv.items() if isinstance(setenv, Mapping) else ():
            if isinstance(value, str):
                yield f"{place}.{key}", value, False


def _classic(recipe: Mapping[str, Any], size: int) -> Iterator[tuple[str, str, str, int | None]]:
    if size > CLOUD_RECIPE_BYTES:
        yield (
            "cloud-recipe-size",
            "recipe",
            f"is {size} bytes; GDK and the cloud take at most {CLOUD_RECIPE_BYTES}",
            None,
        )
    dependencies = _ci(recipe, "ComponentDependencies")
    dependencies = dependencies if isinstance(dependencies, Mapping) else {}
    for index, manifest in enumerate(manifests(recipe)):
        where = f"Manifests[{index}]"
        platform = _ci(manifest, "Platform")
        for key, value in platform.items() if isinstance(platform, Mapping) else ():
            plain = isinstance(value, str) and (value == "*" or _SIMPLE_LABEL.match(value))
            regex = (
                isinstance(value, str) and len(value) >= 2 and value.startswith("/") and value.endswith("/")
            )
            if not (plain or regex):
                yield (
                    "classic-platform-value",
                    f"{where}.Platform.{key}",
                    f'{value!r} never matches on the Java nucleus; use a label, "*" or "/regex/"',
                    index,
                )
        lifecycle = _ci(manifest, "Lifecycle")
        lifecycle = lifecycle if isinstance(lifecycle, Mapping) else {}
        if _ci(lifecycle, "run") is not None and _ci(lifecycle, "startup") is not None:
            yield (
                "classic-run-and-startup",
                f"{where}.Lifecycle",
                "has both run and startup; only one is allowed",
                index,
            )
        for here, text in strings_in(lifecycle, f"{where}.Lifecycle"):
            for variable in variables_in(text):
                if variable.component is None:
                    continue
                if variable.component not in dependencies or variable.namespace not in CROSS_NAMESPACES:
                    yield (
                        "classic-cross-component-variable",
                        here,
                        f"{variable.text}: resolves only for a direct dependency's "
                        f"{', '.join(sorted(CROSS_NAMESPACES))}",
                        index,
                    )


def _both(recipe: Mapping[str, Any]) -> Iterator[tuple[str, str, str, int | None]]:
    places: list[tuple[str, Any, int | None]] = [
        ("ComponentConfiguration", _ci(recipe, "ComponentConfiguration"), None)
    ]
    places += [(f"Manifests[{i}].Lifecycle", _ci(m, "Lifecycle"), i) for i, m in enumerate(manifests(recipe))]
    for where, node, index in places:
        for here, text in strings_in(node if isinstance(node, Mapping) else {}, where):
            for root in FIXED_ROOTS:
                if root in text:
                    yield (
                        "fixed-root",
                        here,
                        f"assumes the root {root}; use {{kernel:rootPath}}, {{work:path}} or "
                        "{artifacts:...} in scripts",
                        index,
                    )


def check_recipe(recipe: Mapping[str, Any], size: int, core: str) -> list[Violation]:
    """What `core` would refuse or change in a recipe document of `size` bytes; empty when it deploys."""
    if core not in CORES:
        raise ValueError(f"unknown core {core!r}; cores: {', '.join(CORES)}")
    rules = _lite(recipe, size) if core == "lite" else _classic(recipe, size)
    found = (*rules, *_both(recipe))
    return [Violation(core, rule, where, message, index) for rule, where, message, index in found]
