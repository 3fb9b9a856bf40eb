"""Semantic versions and npm-style ranges, as the cores read ``ComponentVersion`` and ``VersionRequirement``.

The one semver parser of the project: build.py checks dependency ranges with it, gglocal resolves them.

Supported: comparators ``>= > <= < =`` (and a bare version), ``~`` and ``^``, partial versions and ``x``/``*``
wildcards (``1.2``, ``1.x``), hyphen ranges (``1.2.3 - 2.0.0``), space-separated AND and ``||`` OR.
Pre-release versions order before their release; npm's rule that excludes pre-releases is not applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent_client.errors import RecipeError

# semver.org's regular expression (as in GDK's gdk-config.json schema), with named groups.
SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_PARTIAL = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_COMPARATOR = re.compile(r"^(?P<op><=|>=|<|>|=|~|\^)?\s*(?P<version>\S+)$")


@dataclass(frozen=True, order=False)
class Version:
    """A semver 2.0 version; compares by precedence (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        match = SEMVER.match(text.strip())
        if not match:
            raise RecipeError(f"invalid semantic version {text!r} (expected MAJOR.MINOR.PATCH)")
        pre = tuple(match["pre"].split(".")) if match["pre"] else ()
        return cls(int(match["major"]), int(match["minor"]), int(match["patch"]), pre)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{'.'.join(self.prerelease)}" if self.prerelease else base


Comparator = tuple[str, Version]


def _partial(text: str) -> tuple[list[int | None], tuple[str, ...]]:
    match = _PARTIAL.match(text)
    if not match:
        raise RecipeError(f"invalid version {text!r} in a version requirement")
    parts: list[int | None] = []
    for name in ("major", "minor", "patch"):
        value = match[name]
        parts.append(None if value is None or value in "xX*" else int(value))
    for index in range(1, 3):  # anything after a wildcard is a wildcard
        if parts[index - 1] is None:
            parts[index] = None
    pre = tuple(match["pre"].split(".")) if match["pre"] else ()
    return parts, pre


def _desugar(op: str, text: str) -> list[Comparator]:
    (major, minor, patch), pre = _partial(text)
    if major is None:
        return [] if op in ("", "=", ">=", "<=", "~", "^") else [("<", Version(0, 0, 0, ("0",)))]
    low = Version(major, minor or 0, patch or 0, pre)
    if minor is None:
        next_up = Version(major + 1, 0, 0)
    elif patch is None:
        next_up = Version(major, minor + 1, 0)
    else:
        next_up = None
    if op in ("", "="):
        return [(">=", low), ("<", next_up)] if next_up else [("=", low)]
    if op == ">=":
        return [(">=", low)]
    if op == ">":
        return [(">=", next_up)] if next_up else [(">", low)]
    if op == "<":
        return [("<", low)]
    if op == "<=":
        return [("<", next_up)] if next_up else [("<=", low)]
    if op == "~":
        upper = Version(major + 1, 0, 0) if minor is None else Version(major, minor + 1, 0)
        return [(">=", low), ("<", upper)]
    # caret: do not change the left-most non-zero part
    if major > 0 or minor is None:
        upper = Version(major + 1, 0, 0)
    elif (minor or 0) > 0 or patch is None:
        upper = Version(0, (minor or 0) + 1, 0)
    else:
        upper = Version(0, 0, (patch or 0) + 1)
    return [(">=", low), ("<", upper)]


def _check(comparator: Comparator, version: Version) -> bool:
    op, bound = comparator
    return {
        "=": version == bound,
        ">=": version >= bound,
        ">": version > bound,
        "<=": version <= bound,
        "<": version < bound,
    }[op]


@dataclass(frozen=True)
class VersionRange:
    """An npm-style range: OR of AND-sets of comparators."""

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        alternatives = []
        for part in (text or "*").split("||"):
            part = part.strip()
            hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", part)
            if hyphen:
                comparators = _desugar(">=", hyphen[1]) + _desugar("<=", hyphen[2])
            else:
                tokens = re.sub(r"(<=|>=|<|>|=|~|\^)\s+", r"\1", part).split() or ["*"]
                comparators = []
                for token in tokens:
                    match = _COMPARATOR.match(token)
                    if not match:
                        raise RecipeError(f"invalid version requirement {text!r}")
                    comparators.extend(_desugar(match["op"] or "", match["version"]))
            alternatives.append(tuple(comparators))
        return cls(text, tuple(alternatives))

    def matches(self, version: Version | str) -> bool:
        if isinstance(version, str):
            version = Version.parse(version)
        return any(all(_check(c, version) for c in alternative) for alternative in self.alternatives)

    def __str__(self) -> str:
        return self.text
