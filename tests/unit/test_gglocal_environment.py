"""The environment each core gives a component: only its own Greengrass variables."""

from __future__ import annotations

from pathlib import Path

from gglocal.environment import component_environment
from gglocal.nucleus import CLASSIC, LITE, NucleusProfile

PARENT = {
    "PATH": "/usr/bin",
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": "/stale",
    "SVCUID": "OLD",
    "HOME": "/h",
}


def env(nucleus: NucleusProfile) -> dict[str, str]:
    return component_environment(
        nucleus,
        svcuid="ABCDEFGHIJKLMNOP",
        socket_path=Path("/gg/gg-ipc.socket"),
        thing_name="thing",
        region="eu-west-1",
        root_ca=Path("/gg/rootCA.pem"),
        parent=PARENT,
    )


def test_lite_sets_only_its_variables() -> None:
    lite = env(LITE)
    assert {k: v for k, v in lite.items() if k not in ("PATH", "HOME")} == {
        "SVCUID": "ABCDEFGHIJKLMNOP",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ABCDEFGHIJKLMNOP",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/gg/gg-ipc.socket",
        "AWS_IOT_THING_NAME": "thing",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "GG_ROOT_CA_PATH": "/gg/rootCA.pem",
        "GGC_VERSION": "2.6.0",
        "AWS_CA_BUNDLE": "/gg/rootCA.pem",
    }


def test_classic_also_sets_the_older_socket_variable_and_no_ca_bundle() -> None:
    classic = env(CLASSIC)
    assert classic["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"] == "/gg/gg-ipc.socket"
    assert "AWS_CA_BUNDLE" not in classic
    assert (classic["PATH"], classic["SVCUID"]) == ("/usr/bin", "ABCDEFGHIJKLMNOP")
