"""Component configuration store: get, merge, reset, change events."""

from __future__ import annotations

import pytest

from gglocal.configstore import ConfigStore, deep_merge, diff_paths
from ggrules.variables import pointer_parts

DEFAULTS = {"Interval": "5", "Mqtt": {"Topic": "a", "Qos": "1"}, "List": [1, 2]}


def store_with_events() -> tuple[ConfigStore, list[tuple[str, tuple[str, ...]]]]:
    store = ConfigStore()
    store.register("c", DEFAULTS)
    events: list[tuple[str, tuple[str, ...]]] = []
    store.subscribe("c", (), lambda component, path: events.append((component, path)))
    return store, events


def test_get_returns_copies_of_values_and_subtrees() -> None:
    store, _ = store_with_events()
    assert store.get("c", ("Mqtt", "Topic")) == "a"
    subtree = store.get("c", ("Mqtt",))
    subtree["Topic"] = "changed"
    assert store.get("c", ("Mqtt", "Topic")) == "a"
    with pytest.raises(KeyError):
        store.get("c", ("Nope",))
    with pytest.raises(KeyError):
        store.get("unknown")


def test_merge_at_a_key_path_fires_events_for_changed_leaves() -> None:
    store, events = store_with_events()
    changed = store.merge("c", {"Topic": "b", "New": {"x": 1}}, ("Mqtt",))
    assert sorted(changed) == [("Mqtt", "New"), ("Mqtt", "Topic")]
    assert sorted(events) == [("c", ("Mqtt", "New")), ("c", ("Mqtt", "Topic"))]
    assert store.get("c", ("Mqtt",)) == {"Topic": "b", "Qos": "1", "New": {"x": 1}}


def test_merging_equal_values_fires_nothing() -> None:
    store, events = store_with_events()
    assert store.merge("c", {"Interval": "5"}) == []
    assert events == []


def test_subscribers_only_hear_about_their_key_path() -> None:
    store = ConfigStore()
    store.register("c", DEFAULTS)
    heard: list[tuple[str, ...]] = []
    store.subscribe("c", ("Mqtt",), lambda component, path: heard.append(path))
    store.merge("c", {"Interval": "9"})
    store.merge("c", {"Mqtt": {"Qos": "0"}})
    assert heard == [("Mqtt", "Qos")]


def test_reset_restores_defaults_and_removes_keys_without_default() -> None:
    store, _ = store_with_events()
    store.merge("c", {"Interval": "9", "Extra": True})
    store.reset("c", ["/Interval", "/Extra"])
    assert store.get("c") == DEFAULTS
    store.merge("c", {"Mqtt": {"Topic": "z"}})
    store.reset("c", [""])
    assert store.get("c") == DEFAULTS


def test_newest_change_tracks_paths() -> None:
    store, _ = store_with_events()
    before = store.newest_change("c", ("Mqtt",))
    store.merge("c", {"Mqtt": {"Topic": "q"}})
    assert store.newest_change("c", ("Mqtt",)) >= before
    assert store.newest_change("c", ("Mqtt", "Topic")) > 0


def test_a_failing_listener_does_not_break_others() -> None:
    store = ConfigStore()
    store.register("c", {})
    heard: list[tuple[str, ...]] = []

    def broken(component: str, path: tuple[str, ...]) -> None:
        raise RuntimeError("boom")

    store.subscribe("c", (), broken)
    store.subscribe("c", (), lambda component, path: heard.append(path))
    store.merge("c", {"k": 1})
    assert heard == [("k",)]


def test_helpers() -> None:
    assert pointer_parts("/a/b~1c/d~0e") == ("a", "b/c", "d~e")
    assert pointer_parts("") == ()
    with pytest.raises(ValueError):
        pointer_parts("no-slash")
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}, "d": 4}) == {"a": {"b": 3, "c": 2}, "d": 4}
    assert diff_paths({"a": 1, "b": {"c": 1}}, {"a": 1, "b": {"c": 2}, "e": 0}) == [("b", "c"), ("e",)]


def test_lite_reset_deletes_keys_without_restoring_defaults_or_telling_anyone() -> None:
    store, events = store_with_events()
    store.merge("c", {"Interval": "9"})
    events.clear()
    store.reset("c", ["/Interval", "/Mqtt/Topic"], restore_defaults=False, notify=False)
    assert store.get("c") == {"Mqtt": {"Qos": "1"}, "List": [1, 2]}
    assert events == []
    store.reset("c", [""], restore_defaults=False, notify=False)
    assert store.get("c") == {}


def test_preview_shows_an_update_without_applying_it() -> None:
    store, events = store_with_events()
    store.merge("c", {"Interval": "9", "Extra": "x"})
    events.clear()
    proposed = store.preview("c", {"Mqtt": {"Qos": "0"}}, ["/Extra"])
    assert proposed == {"Interval": "9", "Mqtt": {"Topic": "a", "Qos": "0"}, "List": [1, 2]}
    assert store.get("c")["Extra"] == "x" and events == []


def test_a_merge_with_a_timestamp_keeps_keys_changed_after_it() -> None:
    store, _ = store_with_events()
    store.merge("c", {"Interval": "9"})
    changed_at = store.newest_change("c", ("Interval",))
    store.merge("c", {"Interval": "1", "Mqtt": {"Topic": "b"}}, timestamp=changed_at - 10)
    assert store.get("c", ("Interval",)) == "9"
    assert store.get("c", ("Mqtt", "Topic")) == "b"


def test_a_key_by_key_merge_is_seen_half_done_at_its_first_event() -> None:
    """Lite's ggconfigd: each key its own write, its event sent before the next key is written."""
    store = ConfigStore()
    store.register("c", DEFAULTS)
    seen: list[tuple[tuple[str, ...], str, str]] = []

    def at_event(component: str, path: tuple[str, ...]) -> None:
        seen.append((path, store.get(component, ("Interval",)), store.get(component, ("Mqtt", "Topic"))))

    store.subscribe("c", (), at_event)
    update = {"Interval": "9", "Mqtt": {"Topic": "b", "Qos": "1"}, "New": {}, "List": [3]}
    changed = store.merge("c", update, key_by_key=True)
    assert changed == [("Interval",), ("Mqtt", "Topic"), ("New",), ("List",)]
    assert seen[:2] == [(("Interval",), "9", "a"), (("Mqtt", "Topic"), "9", "b")]
    assert [path for path, _, _ in seen] == changed
    assert store.get("c") == {"Interval": "9", "Mqtt": {"Topic": "b", "Qos": "1"}, "List": [3], "New": {}}
    whole = ConfigStore()
    whole.register("c", DEFAULTS)
    assert sorted(whole.merge("c", update)) == sorted(changed) and whole.get("c") == store.get("c")
