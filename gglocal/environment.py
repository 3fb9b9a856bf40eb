"""The environment each core gives a component's lifecycle scripts.

* The Java nucleus (ShellRunner, the nucleus's ``setenv``): ``SVCUID`` and
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` (the same token), ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH`` and
  ``..._FOR_COMPONENT``, ``AWS_IOT_THING_NAME``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, ``GG_ROOT_CA_PATH``,
  ``GGC_VERSION``.
* Nucleus lite (its unit files and recipe-runner): only
  ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and ``SVCUID`` for IPC, plus
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, ``AWS_IOT_THING_NAME``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``,
  ``GG_ROOT_CA_PATH``, ``GGC_VERSION`` and ``AWS_CA_BUNDLE`` (measured).

The rest comes from the stand-in's own environment, standing in for the service manager's (PATH, HOME, and
whatever a test passes on, such as pip's offline settings); any Greengrass variable in it is dropped first,
so a component sees only what its core sets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gglocal.nucleus import NucleusProfile

GREENGRASS_VARIABLES = frozenset(
    {
        "SVCUID",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
        "AWS_IOT_THING_NAME",
        "GG_ROOT_CA_PATH",
        "GGC_VERSION",
        "AWS_CA_BUNDLE",
        "GREENGRASS_COMPONENT_VERSION",
    }
)


def component_environment(
    nucleus: NucleusProfile,
    *,
    svcuid: str,
    socket_path: Path,
    thing_name: str,
    region: str,
    root_ca: Path,
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one component's scripts under ``nucleus`` (before its Setenv)."""
    base = os.environ if parent is None else parent
    env = {k: v for k, v in base.items() if k not in GREENGRASS_VARIABLES}
    env.update(
        SVCUID=svcuid,
        AWS_CONTAINER_AUTHORIZATION_TOKEN=svcuid,
        AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT=str(socket_path),
        AWS_IOT_THING_NAME=thing_name,
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        GG_ROOT_CA_PATH=str(root_ca),
        GGC_VERSION=nucleus.version,
    )
    if nucleus.ca_bundle_variable:
        env["AWS_CA_BUNDLE"] = str(root_ca)
    if nucleus.legacy_socket_variable:
        env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"] = str(socket_path)
    return env
