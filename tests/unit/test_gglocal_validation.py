"""Configuration validation before a deployment (the Java nucleus's DynamicComponentConfigurationValidator):
one stream per component, the reports a deployment waits for, the nucleus's failure messages."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from gglocal.errors import ConfigurationValidationError, IpcOperationError
from gglocal.validation import ValidationHub


class Validator:
    """A component's validation stream: answers each event with a report (or not at all)."""

    def __init__(self, hub: ValidationHub, component: str, status: str | None, message: str = "") -> None:
        self.hub, self.component, self.status, self.message = hub, component, status, message
        self.events: list[tuple[str, Mapping[str, Any]]] = []

    def __call__(self, deployment_id: str, configuration: Mapping[str, Any]) -> bool:
        self.events.append((deployment_id, configuration))
        if self.status is not None:
            threading.Timer(
                0.05, self.hub.report, (self.component, deployment_id, self.status, self.message)
            ).start()
        return True


def test_accepted_reports_let_the_deployment_go_on() -> None:
    hub = ValidationHub()
    validator = Validator(hub, "a", "ACCEPTED")
    hub.subscribe("a", validator)
    hub.validate("d-1", {"a": {"K": "1"}, "unsubscribed": {"K": "2"}}, timeout_s=5)
    assert validator.events == [("d-1", {"K": "1"})]


def test_a_rejection_fails_with_the_nucleus_message_and_the_component_s_words() -> None:
    hub = ValidationHub()
    hub.subscribe("a", Validator(hub, "a", "REJECTED", "TopK must be 1-10"))
    with pytest.raises(ConfigurationValidationError) as info:
        hub.validate("d-2", {"a": {"TopK": "0"}}, timeout_s=5)
    assert str(info.value) == (
        "Components reported that their to-be-deployed configuration is invalid "
        "{ name = a, message = TopK must be 1-10 }"
    )


def test_no_report_in_time_fails_and_a_late_report_is_refused() -> None:
    hub = ValidationHub()
    hub.subscribe("a", Validator(hub, "a", None))
    with pytest.raises(
        ConfigurationValidationError, match=r"Error while waiting for validation report.*a did not"
    ):
        hub.validate("d-3", {"a": {}}, timeout_s=0.2)
    with pytest.raises(IpcOperationError, match="timed out or was never made"):
        hub.report("a", "d-3", "ACCEPTED", "")


def test_the_first_stream_stays_and_closing_drops_it() -> None:
    hub = ValidationHub()
    first, second = Validator(hub, "a", "ACCEPTED"), Validator(hub, "a", "ACCEPTED")
    close_first = hub.subscribe("a", first)
    hub.subscribe("a", second)
    hub.validate("d-4", {"a": {}}, timeout_s=5)
    assert (len(first.events), len(second.events)) == (1, 0)
    close_first()
    assert not hub.subscribed("a")


def test_a_stream_that_cannot_take_the_event_fails_the_deployment() -> None:
    hub = ValidationHub()
    hub.subscribe("a", lambda deployment_id, configuration: False)
    with pytest.raises(ConfigurationValidationError, match="Error requesting validation from component a"):
        hub.validate("d-5", {"a": {}}, timeout_s=5)
