"""Per-component configuration store with change subscriptions (the nucleus config topics, simplified).

Each component has a JSON object: its recipe DefaultConfiguration with deployment RESET/MERGE applied. Every
change (IPC UpdateConfiguration, ``Core.update_config``, the ``config`` CLI) is diffed and each subscriber
whose key path overlaps a changed path is called with ``(component, changed_key_path)``: one call per
changed key, as both cores send them.

RESET restores the default (the Java nucleus) or, with ``restore_defaults=False``, deletes the key (nucleus
lite, which also sends no event: ``notify=False``). ``key_by_key`` writes a MERGE one leaf at a time, a reader
between its events seeing part of it (lite). A MERGE with a ``timestamp`` leaves alone every key
changed after it (lite's ggconfigd); ``preview`` computes an update's result without applying it (what a
deployment proposes to validators).
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ggrules.variables import pointer_parts

logger = logging.getLogger(__name__)

KeyPath = tuple[str, ...]
ConfigListener = Callable[[str, KeyPath], None]
_MISSING = object()


def lookup(document: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` (list indexes allowed), or raise KeyError."""
    node = document
    for key in path:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise KeyError("/".join(path))
    return node


def deep_merge(base: Any, update: Any) -> Any:
    """A new value: objects merge recursively, anything else replaces."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(update)


def diff_paths(old: Any, new: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """Key paths of nodes that differ between two JSON values (the deepest differing nodes)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changed: list[KeyPath] = []
        for key in list(old) + [k for k in new if k not in old]:
            if old.get(key, _MISSING) is _MISSING or new.get(key, _MISSING) is _MISSING:
                changed.append((*prefix, key))
            else:
                changed.extend(diff_paths(old[key], new[key], (*prefix, key)))
        return changed
    return [] if old == new else [prefix]


def _fresh(
    update: Mapping[str, Any], prefix: KeyPath, modified: Mapping[KeyPath, float], timestamp: float
) -> dict[str, Any]:
    """``update`` without the keys changed after ``timestamp``."""
    kept: dict[str, Any] = {}
    for key, value in update.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            inner = _fresh(value, path, modified, timestamp)
            if inner:
                kept[key] = inner
        elif modified.get(path, 0.0) <= timestamp:
            kept[key] = value
    return kept


def _leaves(value: Mapping[str, Any], prefix: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    """Each leaf of an update (a value that is not a non-empty object) with its key path."""
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            yield from _leaves(item, (*prefix, key))
        else:
            yield (*prefix, key), item


def _reset(
    current: dict[str, Any], defaults: Mapping[str, Any], pointers: Sequence[str], restore: bool
) -> dict[str, Any]:
    for pointer in pointers:
        path = pointer_parts(pointer)
        try:
            default = copy.deepcopy(lookup(defaults, path)) if restore else _MISSING
        except KeyError:
            default = _MISSING
        current = _set_at(current, path, default) if path or default is not _MISSING else {}
    return current


def _merged(current: dict[str, Any], value: Mapping[str, Any], path: Sequence[str]) -> dict[str, Any]:
    try:
        node = lookup(current, path)
    except KeyError:
        node = {}
    merged = deep_merge(node if isinstance(node, Mapping) else {}, value)
    return _set_at(current, tuple(path), merged)


def _set_at(document: dict[str, Any], path: KeyPath, value: Any) -> dict[str, Any]:
    if not path:
        return value if isinstance(value, dict) else {}
    result = dict(document)
    node = result
    for key in path[:-1]:
        child = node.get(key)
        node[key] = dict(child) if isinstance(child, Mapping) else {}
        node = node[key]
    if value is _MISSING:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return result


class ConfigStore:
    """Thread-safe store of component configurations; listeners are called outside the lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._configs: dict[str, dict[str, Any]] = {}
        self._defaults: dict[str, dict[str, Any]] = {}
        self._modified: dict[str, dict[KeyPath, float]] = {}
        self._listeners: dict[int, tuple[str, KeyPath, ConfigListener]] = {}
        self._ids = itertools.count(1)

    def register(
        self, component: str, defaults: Mapping[str, Any], initial: Mapping[str, Any] | None = None
    ) -> None:
        """Set a component's defaults and current value (``initial`` defaults to the defaults)."""
        with self._lock:
            self._defaults[component] = copy.deepcopy(dict(defaults))
            self._modified.setdefault(component, {})
        self._replace(component, copy.deepcopy(dict(initial if initial is not None else defaults)))

    def has(self, component: str) -> bool:
        with self._lock:
            return component in self._configs

    def components(self) -> list[str]:
        with self._lock:
            return sorted(self._configs)

    def get(self, component: str, path: Sequence[str] = ()) -> Any:
        """A deep copy of the value at ``path``; KeyError when the component or key is unknown."""
        with self._lock:
            if component not in self._configs:
                raise KeyError(component)
            return copy.deepcopy(lookup(self._configs[component], path))

    def newest_change(self, component: str, path: Sequence[str] = ()) -> float:
        """Latest modification time (epoch s) of any node on or under ``path``; 0 when never changed."""
        prefix = tuple(path)
        with self._lock:
            times = self._modified.get(component, {})
            return max((t for p, t in times.items() if p[: len(prefix)] == prefix), default=0.0)

    def merge(
        self,
        component: str,
        value: Mapping[str, Any],
        path: Sequence[str] = (),
        *,
        timestamp: float | None = None,
        key_by_key: bool = False,
    ) -> list[KeyPath]:
        """Deep-merge ``value`` into the object at ``path`` (keys changed after ``timestamp`` kept as they
        are); returns the changed key paths. ``key_by_key`` writes one leaf at a time, in the update's
        order, each write's events sent before the next is made (lite's ggconfigd)."""
        with self._lock:
            if timestamp is not None:
                modified = self._modified.get(component, {})
                value = _fresh(value, tuple(path), modified, timestamp)
            if not key_by_key:
                return self._replace(component, _merged(self._configs.get(component, {}), value, path))
        changed: list[KeyPath] = []
        for leaf, item in _leaves(value, tuple(path)):
            with self._lock:
                current = self._configs.get(component, {})
                merged = _merged(current, {leaf[-1]: item}, leaf[:-1])
            changed += self._replace(component, merged)
        return changed

    def reset(
        self, component: str, pointers: Sequence[str], *, restore_defaults: bool = True, notify: bool = True
    ) -> list[KeyPath]:
        """Reset each JSON-pointer path to its default value (or remove it when it has none, or always when
        not ``restore_defaults``); ``""`` is the whole configuration."""
        with self._lock:
            defaults = self._defaults.get(component, {})
            current = _reset(self._configs.get(component, {}), defaults, pointers, restore_defaults)
            return self._replace(component, current, notify=notify)

    def preview(
        self,
        component: str,
        merge: Mapping[str, Any],
        reset: Sequence[str] = (),
        *,
        restore_defaults: bool = True,
    ) -> dict[str, Any]:
        """The configuration RESET then MERGE would leave, without applying it."""
        with self._lock:
            current = copy.deepcopy(self._configs.get(component, {}))
            defaults = self._defaults.get(component, {})
        return _merged(_reset(current, defaults, reset, restore_defaults), merge, ())

    def subscribe(self, component: str, path: Sequence[str], listener: ConfigListener) -> Callable[[], None]:
        """Call ``listener(component, changed_path)`` on changes overlapping ``path``; returns unsubscribe."""
        listener_id = next(self._ids)
        with self._lock:
            self._listeners[listener_id] = (component, tuple(path), listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(listener_id, None)

        return unsubscribe

    def _replace(self, component: str, new: dict[str, Any], *, notify: bool = True) -> list[KeyPath]:
        with self._lock:
            old = self._configs.get(component, {})
            changed = diff_paths(old, new)
            self._configs[component] = new
            now = time.time()
            modified = self._modified.setdefault(component, {})
            for path in changed:
                modified[path] = now
            listeners = [e for e in self._listeners.values() if e[0] == component] if notify else []
        for _, watched, listener in listeners:
            self._notify(component, watched, listener, changed)
        return changed

    @staticmethod
    def _notify(component: str, watched: KeyPath, listener: ConfigListener, changed: list[KeyPath]) -> None:
        sent: set[KeyPath] = set()
        for path in changed:
            if path[: len(watched)] == watched:
                event_path = path
            elif watched[: len(path)] == path:
                event_path = watched
            else:
                continue
            if event_path in sent:
                continue
            sent.add(event_path)
            try:
                listener(component, event_path)
            except Exception:
                logger.exception("configuration listener for %s failed", component)
