"""Lifecycle steps rendered into the script a core runs and the environment it adds, one renderer per core.

* ``render_classic`` is the Java nucleus's ``KernelConfigResolver``: every ``{namespace:key}`` it resolves is
  replaced as is, anything else is left as written; ``Setenv`` (lifecycle, then step) goes into the
  environment. The nucleus renders at deployment: the core keeps the result and renders again only when a
  deployment changes the configuration (and restarts the component if the text changed).
* ``render_lite`` is nucleus lite's recipe-runner, which writes a ``/bin/sh`` script at every start:
  ``#!/bin/sh``, then ``export KEY='value'`` for the lifecycle's and the step's ``Setenv`` (single-quoted,
  ``'`` written as ``'\\''``: values arrive intact), then the script, where each substituted value gets a
  backslash before ``"``, ``\\``, ``$`` and a backtick (``write_escaped_char``: safe inside double quotes,
  changed inside single quotes or bare). At the first ``{...}`` it cannot substitute it stops writing and
  runs what it wrote. A startup script is followed by lite's two ``systemd-notify`` lines, emulated by
  ``:`` (the script's status is then theirs unless it exits itself).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gglocal.lifecycle import Lifecycle
from gglocal.variables import VariableContext, expand, resolve_lite
from ggrules.variables import LITE_MAX_VARIABLE, LitePart, lite_parts

logger = logging.getLogger(__name__)

_SETENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOUBLE_QUOTE_SPECIALS = frozenset('"\\$`')
LITE_STARTUP_SUFFIX = "\n: systemd-notify --ready\n: systemd-notify --stopping\n"


@dataclass(frozen=True)
class RenderedStep:
    """A step as the core runs it: ``script`` for ``sh -c``, ``setenv`` added to the environment."""

    script: str
    setenv: Mapping[str, str] = field(default_factory=dict)
    skipif: str | None = None


@dataclass(frozen=True)
class RenderedLifecycle:
    """A whole lifecycle rendered the Java nucleus's way at a deployment: the lifecycle's Setenv and each
    step with its own Setenv. ``step(name)`` layers them as the runner needs them."""

    setenv: Mapping[str, str]
    steps: Mapping[str, RenderedStep]

    def step(self, name: str) -> RenderedStep:
        own = self.steps[name]
        return RenderedStep(own.script, {**self.setenv, **own.setenv}, own.skipif)

    def changed(self, other: RenderedLifecycle) -> set[str]:
        """Names of the steps (and "Setenv") whose rendered text differs from ``other``."""
        names = {n for n in self.steps.keys() | other.steps.keys() if self.steps.get(n) != other.steps.get(n)}
        return names | ({"Setenv"} if self.setenv != other.setenv else set())


def render_classic(lifecycle: Lifecycle, context: VariableContext) -> RenderedLifecycle:
    """The Java nucleus's rendering of a lifecycle with the configuration as it is at the deployment."""
    steps = {
        name: RenderedStep(
            expand(step.script, context),
            {k: expand(v, context) for k, v in step.setenv.items()},
            expand(step.skipif, context) if step.skipif else None,
        )
        for name, step in lifecycle.steps.items()
    }
    return RenderedLifecycle({k: expand(v, context) for k, v in lifecycle.setenv.items()}, steps)


def _lite_failure(part: LitePart) -> str:
    """Nucleus lite's words for a variable it cannot write."""
    if not part.closed:
        return "Recipe escape is not terminated."
    if len(part.text) > LITE_MAX_VARIABLE:
        return "Recipe escape exceeded max length."
    if ":" not in part.text:
        return "No : found in recipe variable."
    if part.substitutable:
        return f"Failed to read configuration {part.key!r}: Key not found."
    return f"Unhandled variable substitution: {part.text}."


class _LiteScript:
    """The script lite writes, piece by piece; ``failed`` once a piece could not be written."""

    def __init__(self, component: str, context: VariableContext) -> None:
        self.component = component
        self.context = context
        self.out = ["#!/bin/sh\n"]
        self.failed = False

    def text(self, text: str, *, single_quoted: bool) -> bool:
        for part in lite_parts(text):
            if not part.variable:
                self.out.append(part.text.replace("'", "'\\''") if single_quoted else part.text)
                continue
            value = resolve_lite(part, self.context)
            if value is None:
                logger.error(
                    "%s: %s (nucleus lite stops writing the script here and runs what it wrote)",
                    self.component,
                    _lite_failure(part),
                )
                self.failed = True
                return False
            if single_quoted:
                self.out.append(value.replace("'", "'\\''"))
            else:
                self.out.append("".join("\\" + c if c in _DOUBLE_QUOTE_SPECIALS else c for c in value))
        return True

    def exports(self, setenv: Mapping[str, str]) -> bool:
        for key, value in setenv.items():
            if not _SETENV_KEY.match(key):
                logger.error("%s: Invalid lifecycle Setenv key %r", self.component, key)
                self.failed = True
                return False
            self.out.append(f"export {key}='")
            if not self.text(value, single_quoted=True):
                return False
            self.out.append("'\n")
        return True


def render_lite(lifecycle: Lifecycle, name: str, context: VariableContext) -> RenderedStep:
    """Nucleus lite's script for step ``name`` (which must exist), with the configuration as it is now."""
    step = lifecycle.steps[name]
    script = _LiteScript(context.component.name, context)
    if script.exports(lifecycle.setenv) and script.exports(step.setenv):
        if not step.script:
            script.out.append("\n")
        if script.text(step.script, single_quoted=False) and name == "Startup":
            script.out.append(LITE_STARTUP_SUFFIX)
    return RenderedStep("".join(script.out))
