"""accessControl parsing and matching, as the nucleus authorizes IPC requests."""

from __future__ import annotations

import json

import pytest

from gglocal.auth import Authorizer
from gglocal.errors import IpcOperationError
from ggrules.access import MQTTPROXY, PUBSUB, is_authorized, parse_access_control, resource_matches

PUB = "aws.greengrass#PublishToIoTCore"
SUB = "aws.greengrass#SubscribeToIoTCore"

CONFIG = {
    "accessControl": {
        MQTTPROXY: {
            "pub": {
                "policyDescription": "results",
                "operations": [PUB],
                "resources": ["gg/results", "gg/+/status"],
            },
            "sub": {"operations": [SUB], "resources": ["cmd/#"]},
        },
        PUBSUB: {"all": {"operations": ["*"], "resources": ["local/*"]}},
    }
}


@pytest.mark.parametrize(
    ("service", "operation", "resource", "allowed"),
    [
        (MQTTPROXY, PUB, "gg/results", True),
        (MQTTPROXY, PUB, "gg/cam1/status", True),
        (MQTTPROXY, PUB, "gg/cam1/other", False),
        (MQTTPROXY, PUB, "cmd/x", False),
        (MQTTPROXY, SUB, "cmd/x/y", True),
        (MQTTPROXY, SUB, "cmd/+", True),
        (MQTTPROXY, SUB, "#", False),
        (MQTTPROXY, SUB, "gg/results", False),
        (PUBSUB, "aws.greengrass#PublishToTopic", "local/anything/here", True),
        (PUBSUB, "aws.greengrass#SubscribeToTopic", "remote/x", False),
        ("aws.greengrass.ipc.other", PUB, "gg/results", False),
    ],
)
def test_policies_allow_only_listed_operations_and_resources(
    service: str, operation: str, resource: str, allowed: bool
) -> None:
    assert is_authorized(parse_access_control(CONFIG), service, operation, resource) is allowed


def test_access_control_may_be_json_text_and_keys_any_case() -> None:
    config = {"AccessControl": json.dumps(CONFIG["accessControl"])}
    assert is_authorized(parse_access_control(config), MQTTPROXY, PUB, "gg/results")


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("a/*", "a/b/c", True),
        ("*", "anything", True),
        ("a/${*}", "a/*", True),
        ("a/${*}", "a/b", False),
        ("a${$}b", "a$b", True),
        ("literal", "literal", True),
        ("literal", "literally", False),
    ],
)
def test_glob_resources_and_escapes(pattern: str, resource: str, expected: bool) -> None:
    assert resource_matches(pattern, resource) is expected


def test_no_access_control_denies_everything() -> None:
    assert not is_authorized(parse_access_control({}), MQTTPROXY, PUB, "gg/results")


def test_authorizer_raises_unauthorized_error_naming_the_request() -> None:
    authorizer = Authorizer(lambda component: CONFIG if component == "c" else None)
    authorizer.check("c", MQTTPROXY, PUB, "gg/results")
    with pytest.raises(IpcOperationError) as info:
        authorizer.check("c", MQTTPROXY, PUB, "other")
    assert info.value.error_name == "UnauthorizedError"
    assert "other" in info.value.message and "c" in info.value.message
    with pytest.raises(IpcOperationError):
        authorizer.check("unknown", MQTTPROXY, PUB, "gg/results")


def test_the_thing_name_variable_in_a_resource_is_substituted_and_an_unknown_one_matches_nothing() -> None:
    policies = parse_access_control(
        {
            "accessControl": {
                MQTTPROXY: {"p": {"operations": ["*"], "resources": ["d/{iot:thingName}/#", "x/{iot:other}"]}}
            }
        }
    )
    assert is_authorized(policies, MQTTPROXY, "aws.greengrass#PublishToIoTCore", "d/cam/r", thing_name="cam")
    assert not is_authorized(
        policies, MQTTPROXY, "aws.greengrass#PublishToIoTCore", "d/other/r", thing_name="cam"
    )
    assert not is_authorized(policies, MQTTPROXY, "aws.greengrass#PublishToIoTCore", "x/{iot:other}")
