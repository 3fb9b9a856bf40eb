"""gglocal: a local stand-in of the AWS IoT Greengrass v2 core for developers and CI.

It serves Greengrass IPC to the real awsiotsdk client on a unix socket, authorizes by ``accessControl``,
keeps component configuration, bridges IoT Core to an MQTT broker (or stdout) through an on-disk outbox
(classic) or straight, refusing while offline (lite's iotcored), and deploys GDK build output: recipes,
artifacts, lifecycle scripts. It behaves as one real core at a time,
refusing what that core refuses: nucleus lite or the Java nucleus ("classic"; ``gglocal.nucleus``). Entry
points: :class:`Core`, :class:`IpcServer`, and ``python -m gglocal``.
"""

from gglocal.core import Core
from gglocal.errors import (
    ArtifactError,
    ConfigurationValidationError,
    ControlError,
    DeploymentError,
    FramingError,
    GgLocalError,
    IpcOperationError,
    RecipeError,
)
from gglocal.nucleus import CLASSIC, LITE, NucleusProfile
from gglocal.runner import ComponentState, RestartPolicy
from gglocal.server import IpcServer

__all__ = [
    "CLASSIC",
    "LITE",
    "ArtifactError",
    "ComponentState",
    "ConfigurationValidationError",
    "ControlError",
    "Core",
    "DeploymentError",
    "FramingError",
    "GgLocalError",
    "IpcOperationError",
    "IpcServer",
    "NucleusProfile",
    "RecipeError",
    "RestartPolicy",
]
