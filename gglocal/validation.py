"""Configuration validation before a deployment applies it (the Java nucleus; nucleus lite has none).

A component subscribes with SubscribeToValidateConfigurationUpdates; a deployment that changes its
configuration (and not its version) sends it a ValidateConfigurationUpdateEvents event with the whole proposed
configuration and a deployment id, then waits for SendConfigurationValidityReport (ACCEPTED or REJECTED, with
a message) up to the timeout, 20 s by default (DynamicComponentConfigurationValidator.DEFAULT_TIMEOUT_SECOND).
A rejection or a missing report fails the deployment, whose configuration is then never applied. As in
ConfigStoreIPCEventStreamAgent: one validation stream per component (the first; closing any stream of that
component drops it), and a report for no pending request is InvalidArgumentsError.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gglocal.errors import ConfigurationValidationError, IpcOperationError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 20.0
REJECTED = "REJECTED"
ACCEPTED = "ACCEPTED"

SendValidation = Callable[[str, Mapping[str, Any]], bool]  # (deployment id, configuration) -> sent


@dataclass(frozen=True)
class ValidityReport:
    status: str
    message: str = ""


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.report: ValidityReport | None = None


class ValidationHub:
    """The validation subscribers and the reports a deployment waits for; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, SendValidation] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}

    def subscribe(self, component: str, send: SendValidation) -> Callable[[], None]:
        """Register ``component``'s validation stream (the first one stays); returns the close callback."""
        with self._lock:
            self._listeners.setdefault(component, send)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(component, None)

        return unsubscribe

    def subscribed(self, component: str) -> bool:
        with self._lock:
            return component in self._listeners

    def report(self, component: str, deployment_id: Any, status: str, message: str) -> None:
        """A SendConfigurationValidityReport from ``component``."""
        if not isinstance(deployment_id, str):
            raise IpcOperationError(
                "InvalidArgumentsError",
                "Cannot accept configuration validity report, the deployment ID provided was null",
            )
        with self._lock:
            pending = self._pending.pop((component, deployment_id), None)
        if pending is None:
            raise IpcOperationError(
                "InvalidArgumentsError", "Validation request either timed out or was never made"
            )
        pending.report = ValidityReport(status, message)
        pending.done.set()

    def validate(
        self, deployment_id: str, proposals: Mapping[str, Mapping[str, Any]], timeout_s: float
    ) -> None:
        """Ask every subscribed component about its proposed configuration; raise ConfigurationValidationError
        (the nucleus's message) on a rejection, a failed send, or a report missing after ``timeout_s``."""
        asked: dict[str, _Pending] = {}
        try:
            for component, configuration in proposals.items():
                with self._lock:
                    send = self._listeners.get(component)
                    if send is not None:
                        asked[component] = self._pending[(component, deployment_id)] = _Pending()
                if send is not None and not send(deployment_id, configuration):
                    raise ConfigurationValidationError(
                        f"Error requesting validation from component {component}"
                    )
            self._wait(asked, timeout_s)
        finally:
            with self._lock:
                for component in asked:
                    self._pending.pop((component, deployment_id), None)
        rejected = [
            (c, p.report) for c, p in asked.items() if p.report is not None and p.report.status == REJECTED
        ]
        if rejected:
            details = "".join(
                f" {{ name = {c}, message = {r.message} }}" for c, r in rejected if r is not None
            )
            raise ConfigurationValidationError(
                "Components reported that their to-be-deployed configuration is invalid" + details
            )

    @staticmethod
    def _wait(asked: Mapping[str, _Pending], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for pending in asked.values():
            pending.done.wait(max(0.0, deadline - time.monotonic()))
        silent = sorted(c for c, p in asked.items() if not p.done.is_set())
        if silent:
            logger.error(
                "no configuration validity report from %s within %.1f s", ", ".join(silent), timeout_s
            )
            raise ConfigurationValidationError(
                "Error while waiting for validation report for one or more components: "
                f"{', '.join(silent)} did not report within {timeout_s:g} s"
            )
