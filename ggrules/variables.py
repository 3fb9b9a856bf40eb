"""Recipe variables: ``{namespace:key}`` and ``{Component.Name:namespace:key}``, found and substituted.

The one reader of recipe variables in the project: build.py checks the variables its recipes use against
what each core substitutes (``ggrules.cores``), and gglocal expands them when it runs a lifecycle script.

Namespaces and keys, as the Java nucleus documents them (``KernelConfigResolver``):

* ``artifacts:path``, ``artifacts:decompressedPath``, ``work:path``: the component's folders;
* ``configuration:/json/pointer``: a configuration value (objects and arrays as compact JSON);
* ``kernel:rootPath``, ``iot:thingName``: the core's root folder and the thing name.

A cross-component form names a direct dependency first, and only ``artifacts``, ``work`` and
``configuration`` exist there. A shell expansion such as ``${VAR:-default}`` reads as a variable with an
unknown namespace (``VAR``), which is why scripts must not use that shell syntax.

Nucleus lite reads differently (``lite_parts``; its recipe-runner ``handle_escape`` and
``ggl_substitute_escape``): every ``{`` opens a variable that runs to the next ``}``, whatever is inside, and
the text is split at its first ``:`` into namespace and key. It substitutes only the component's own
``kernel:rootPath``, ``iot:thingName``, ``work:path``, ``artifacts:path``, ``artifacts:decompressedPath``
and ``configuration:<pointer>``; anything else ("Unhandled variable substitution") ends the script there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# {namespace:key}, or {Component:namespace:key} when there is a second ':'.
_BRACES = re.compile(r"\{([^{}:\s]+):([^{}\s]+)\}")

NAMESPACES: dict[str, frozenset[str] | None] = {  # None: the key is a JSON pointer
    "artifacts": frozenset({"path", "decompressedPath"}),
    "work": frozenset({"path"}),
    "configuration": None,
    "kernel": frozenset({"rootPath"}),
    "iot": frozenset({"thingName"}),
}
CROSS_NAMESPACES = frozenset({"artifacts", "work", "configuration"})
LITE_NAMESPACES: dict[str, frozenset[str] | None] = {  # None: any key (a JSON pointer read over IPC)
    "kernel": frozenset({"rootPath"}),
    "iot": frozenset({"thingName"}),
    "work": frozenset({"path"}),
    "artifacts": frozenset({"path", "decompressedPath"}),
    "configuration": None,
}
LITE_MAX_VARIABLE = 255  # the inside of {...} is read into a 256-byte buffer ("exceeded max length")


@dataclass(frozen=True)
class Variable:
    """One ``{...}`` in a text. ``component`` is None for the component's own variables."""

    text: str
    namespace: str
    key: str
    component: str | None = None

    @property
    def known(self) -> bool:
        """Whether a core substitutes this namespace and key (JSON pointers must start with /)."""
        if self.namespace not in (CROSS_NAMESPACES if self.component else NAMESPACES):
            return False
        keys = NAMESPACES[self.namespace]
        return self.key.startswith("/") if keys is None else self.key in keys


def _variable(match: re.Match[str]) -> Variable:
    first, rest = match.group(1), match.group(2)
    namespace, sep, key = rest.partition(":")
    if not sep:  # {namespace:key}; keys hold no ':' (the nucleus's own pattern)
        return Variable(match.group(0), first, rest)
    return Variable(match.group(0), namespace, key, component=first)


def variables_in(text: str) -> Iterator[Variable]:
    """Every recipe variable in text, in order."""
    for match in _BRACES.finditer(text):
        yield _variable(match)


def substitute(text: str, value_of: Callable[[Variable], str | None]) -> str:
    """text with each variable replaced by value_of(variable); a None value leaves it as written."""

    def replace(match: re.Match[str]) -> str:
        value = value_of(_variable(match))
        return match.group(0) if value is None else value

    return _BRACES.sub(replace, text)


def pointer_parts(pointer: str) -> tuple[str, ...]:
    """RFC 6901 JSON pointer to its keys: ``/a/b~1c`` -> ``("a", "b/c")``; ``""`` and ``/`` are the root."""
    if pointer in ("", "/"):
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must start with /")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/"))


@dataclass(frozen=True)
class LitePart:
    """A piece of a text as nucleus lite reads it: literal text, or (``variable``) the inside of ``{...}``.

    ``closed`` is False for a ``{`` with no ``}`` after it (lite: "Recipe escape is not terminated.").
    """

    text: str
    variable: bool = False
    closed: bool = True

    @property
    def namespace(self) -> str:
        return self.text.partition(":")[0]

    @property
    def key(self) -> str:
        return self.text.partition(":")[2]

    @property
    def substitutable(self) -> bool:
        """Whether nucleus lite substitutes this variable (a configuration key may still be missing)."""
        if not self.variable or not self.closed or len(self.text) > LITE_MAX_VARIABLE or ":" not in self.text:
            return False
        if self.namespace not in LITE_NAMESPACES:
            return False
        keys = LITE_NAMESPACES[self.namespace]
        return keys is None or self.key in keys


def lite_parts(text: str) -> Iterator[LitePart]:
    """The literal pieces and ``{...}`` variables of text, in order, as nucleus lite splits them."""
    index = 0
    while index < len(text):
        start = text.find("{", index)
        if start < 0:
            yield LitePart(text[index:])
            return
        if start > index:
            yield LitePart(text[index:start])
        end = text.find("}", start + 1)
        if end < 0:
            yield LitePart(text[start + 1 :], variable=True, closed=False)
            return
        yield LitePart(text[start + 1 : end], variable=True)
        index = end + 1
