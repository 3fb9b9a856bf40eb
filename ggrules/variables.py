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
