"""npm-style version requirements for component dependencies."""

from __future__ import annotations

import pytest

from agent_client.errors import RecipeError
from ggrules.semver import Version, VersionRange


@pytest.mark.parametrize(
    ("requirement", "version", "expected"),
    [
        (">=1.0.0 <1.1.0", "1.0.5", True),
        (">=1.0.0 <1.1.0", "1.1.0", False),
        (">= 1.0.0 < 2", "1.9.9", True),
        (">1.2.3", "1.2.3", False),
        (">1.2.3", "1.2.4", True),
        (">1.2", "1.2.9", False),
        (">1.2", "1.3.0", True),
        ("<=1.2", "1.2.9", True),
        ("<=1.2.3", "1.2.4", False),
        ("<2.0.0", "1.99.0", True),
        ("=1.2.3", "1.2.3", True),
        ("1.2.3", "1.2.4", False),
        ("1.2", "1.2.7", True),
        ("1.x", "1.9.0", True),
        ("1.x", "2.0.0", False),
        ("*", "9.9.9", True),
        ("", "0.0.1", True),
        ("~1.2.3", "1.2.9", True),
        ("~1.2.3", "1.3.0", False),
        ("~1.2", "1.2.0", True),
        ("~1", "1.9.9", True),
        ("~1", "2.0.0", False),
        ("^1.2.3", "1.9.0", True),
        ("^1.2.3", "2.0.0", False),
        ("^1.2.3", "1.2.2", False),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.0.3", "0.0.3", True),
        ("^0.0.3", "0.0.4", False),
        ("<1.0.0 || >=2.0.0", "0.5.0", True),
        ("<1.0.0 || >=2.0.0", "1.5.0", False),
        ("<1.0.0 || >=2.0.0", "2.1.0", True),
        ("1.0.0 - 2.0.0", "2.0.0", True),
        ("1.0.0 - 2.0.0", "2.0.1", False),
        (">=1.0.0", "1.0.0-beta.1", False),
        (">=1.0.0-alpha", "1.0.0-beta", True),
    ],
)
def test_range_matching(requirement: str, version: str, expected: bool) -> None:
    assert VersionRange.parse(requirement).matches(version) is expected


def test_prerelease_ordering() -> None:
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0"]
    versions = [Version.parse(v) for v in order]
    assert sorted(versions) == versions


@pytest.mark.parametrize("text", ["1.0", "x.y.z", "01.0.0", ""])
def test_invalid_versions_raise_recipe_error(text: str) -> None:
    with pytest.raises(RecipeError):
        Version.parse(text)


def test_invalid_requirement_raises_recipe_error() -> None:
    with pytest.raises(RecipeError):
        VersionRange.parse(">=abc")
