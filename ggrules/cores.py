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
  only: "Lifecycle with no phase is not supported").
- `lite-cross-component-variable`: `{Other.Component:...}` is not substituted ("Unhandled variable
  substitution") and the script runs with the text left in.
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

Both:
- `fixed-root`: a script path that assumes a root folder (`/greengrass/v2` is the Java nucleus's default,
  `/var/lib/greengrass` lite's); use `{kernel:rootPath}`, `{work:path}` or `{artifacts:...}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .variables import CROSS_NAMESPACES, variables_in

CORES = ("lite", "classic")
LITE_RECIPE_BYTES = 8196
CLOUD_RECIPE_BYTES = 16000
LITE_RUNTIMES = ("*", "aws_nucleus_lite")
LITE_STEPS = ("install", "run", "startup", "shutdown")
LITE_LIFECYCLE_KEYS = (*LITE_STEPS, "Setenv")
FIXED_ROOTS = ("/greengrass/v2", "/var/lib/greengrass")
_SIMPLE_LABEL = re.compile(r"^[a-zA-Z0-9]")


@dataclass(frozen=True)
class Violation:
    """One rule of one core that a recipe breaks."""

    core: str
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.core}: {self.rule}]"


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


def _strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _strings(item, f"{where}[{index}]")


def _scripts(lifecycle: Mapping[str, Any], where: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every script of a lifecycle, Setenv values excluded."""
    for step, body in lifecycle.items():
        if str(step).lower() == "setenv":
            continue
        if isinstance(body, Mapping):
            for key, value in body.items():
                if str(key).lower() != "setenv":
                    yield from _strings(value, f"{where}.{step}.{key}")
        else:
            yield from _strings(body, f"{where}.{step}")


def _lite(recipe: Mapping[str, Any], size: int) -> Iterator[tuple[str, str, str]]:
    if size > LITE_RECIPE_BYTES:
        yield "lite-recipe-size", "recipe", f"is {size} bytes; nucleus lite reads at most {LITE_RECIPE_BYTES}"
    for index, manifest in enumerate(manifests(recipe)):
        where = f"Manifests[{index}]"
        if not lite_selects(manifest):
            yield (
                "lite-platform-runtime",
                f"{where}.Platform",
                'needs "runtime": "*" (or "aws_nucleus_lite"); without it nucleus lite skips the manifest',
            )
        lifecycle = manifest.get("Lifecycle")
        lifecycle = lifecycle if isinstance(lifecycle, Mapping) else {}
        for key in lifecycle:
            if key not in LITE_LIFECYCLE_KEYS:
                yield (
                    "lite-lifecycle-keys",
                    f"{where}.Lifecycle.{key}",
                    f"is ignored by nucleus lite, which reads only {', '.join(LITE_LIFECYCLE_KEYS)} as "
                    "written",
                )
        if not any(step in lifecycle for step in ("install", "run", "startup")):
            yield (
                "lite-lifecycle-step",
                f"{where}.Lifecycle",
                "has no install, run or startup step; nucleus lite refuses a component without one",
            )
        for here, text in _scripts(lifecycle, f"{where}.Lifecycle"):
            for variable in variables_in(text):
                if variable.component is not None:
                    yield (
                        "lite-cross-component-variable",
                        here,
                        f"{variable.text}: nucleus lite does not substitute another component's variables",
                    )
                elif variable.namespace == "configuration":
                    yield (
                        "lite-configuration-in-script",
                        here,
                        f"{variable.text}: nucleus lite escapes substituted values for double quotes; pass "
                        f"configuration through Setenv, which it leaves intact",
                    )


def _classic(recipe: Mapping[str, Any], size: int) -> Iterator[tuple[str, str, str]]:
    if size > CLOUD_RECIPE_BYTES:
        yield (
            "cloud-recipe-size",
            "recipe",
            f"is {size} bytes; GDK and the cloud take at most {CLOUD_RECIPE_BYTES}",
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
                )
        lifecycle = _ci(manifest, "Lifecycle")
        lifecycle = lifecycle if isinstance(lifecycle, Mapping) else {}
        if _ci(lifecycle, "run") is not None and _ci(lifecycle, "startup") is not None:
            yield (
                "classic-run-and-startup",
                f"{where}.Lifecycle",
                "has both run and startup; only one is allowed",
            )
        for here, text in _strings(lifecycle, f"{where}.Lifecycle"):
            for variable in variables_in(text):
                if variable.component is None:
                    continue
                if variable.component not in dependencies or variable.namespace not in CROSS_NAMESPACES:
                    yield (
                        "classic-cross-component-variable",
                        here,
                        f"{variable.text}: resolves only for a direct dependency's "
                        f"{', '.join(sorted(CROSS_NAMESPACES))}",
                    )


def _both(recipe: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    places = [("ComponentConfiguration", _ci(recipe, "ComponentConfiguration"))]
    places += [(f"Manifests[{i}].Lifecycle", _ci(m, "Lifecycle")) for i, m in enumerate(manifests(recipe))]
    for where, node in places:
        for here, text in _strings(node if isinstance(node, Mapping) else {}, where):
            for root in FIXED_ROOTS:
                if root in text:
                    yield (
                        "fixed-root",
                        here,
                        f"assumes the root {root}; use {{kernel:rootPath}}, {{work:path}} or "
                        "{artifacts:...} in scripts",
                    )


def check_recipe(recipe: Mapping[str, Any], size: int, core: str) -> list[Violation]:
    """What `core` would refuse or change in a recipe document of `size` bytes; empty when it deploys."""
    if core not in CORES:
        raise ValueError(f"unknown core {core!r}; cores: {', '.join(CORES)}")
    rules = _lite(recipe, size) if core == "lite" else _classic(recipe, size)
    return [Violation(core, rule, where, message) for rule, where, message in (*rules, *_both(recipe))]
