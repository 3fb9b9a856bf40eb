"""What each real core does where a component can tell: the profiles of nucleus lite and the Java nucleus.

A :class:`NucleusProfile` is the one place a behaviour that differs between the cores is decided; every
other module asks the profile. Sources: ``shared/reference/greengrass-real-cores.md`` (nucleus lite 2.6.0,
measured), and the public sources of aws-greengrass-lite (v2.6.0) and aws-greengrass-nucleus (the files named
per field). ``PROFILES`` is keyed by the ``--nucleus`` name; ``profile(name)`` refuses an unknown one.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NUCLEUS = "classic"
VALIDATION_OPERATIONS = frozenset(
    {"SubscribeToValidateConfigurationUpdates", "SendConfigurationValidityReport"}
)


@dataclass(frozen=True)
class NucleusProfile:
    """One core's behaviour, field by field."""

    name: str
    core: str
    """The core's name in ``ggrules.cores`` ("lite" or "classic"), whose recipe rules apply."""
    version: str
    """``GGC_VERSION`` given to components."""
    ipc_socket: str
    """The IPC socket's name under the root: lite ``gg-ipc.socket`` (ggipcd), Java ``ipc.socket``."""
    legacy_socket_variable: bool
    """``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH`` is set beside ``..._FOR_COMPONENT`` (Java, not lite)."""
    ca_bundle_variable: bool
    """``AWS_CA_BUNDLE`` is set to the root CA (lite, measured)."""
    exact_keys: bool
    """Lifecycle and step keys read as written (lite) instead of case-insensitively (Java ``Topics``)."""
    yaml_strings: bool
    """Every YAML scalar is a string, numbers and booleans too (lite's libyaml reader, ggl-yaml)."""
    installs_archives: bool
    """A local deployment unarchives ZIPs, checks digests, applies ``Permission`` and refuses a missing
    artifact (Java DeploymentService). Lite copies the artifact folder as it is and leaves
    ``artifacts-unarchived`` empty ("Assuming recipe artifacts are found on-disk.")."""
    lite_scripts: bool
    """Scripts are rendered as lite's recipe-runner writes them: ``Setenv`` as single-quoted ``export`` lines,
    substituted values escaped for double quotes, paths ending in ``/``, configuration read at each start,
    the script cut off at the first variable it cannot substitute. Otherwise the Java nucleus's
    ``KernelConfigResolver``: rendered at deployment, unresolvable variables left as written."""
    errored_restarts: bool
    """UpdateState ERRORED stops and restarts the component (Java ``Lifecycle``); lite's gghealthd ignores
    it."""
    error_limit: str
    """When errors make a component BROKEN: "per-state" (Java: 3 errors in one state, each within an hour of
    the one before, cleared by leaving the state normally) or "start-limit" (lite's systemd units:
    ``StartLimitBurst=3`` starts per ``StartLimitInterval=3600``)."""
    restart_delay_s: float
    """Delay before a restart after an error: none in the Java nucleus, ``RestartSec=1`` in lite's units."""
    error_text: bool
    """Error responses carry ``message`` (Java); lite sends only ``_message``/``_errorCode``, so the SDK's
    exception text is empty."""
    reset_deletes: bool
    """A deployment's RESET deletes the keys, restores no default and sends no event (lite ggdeploymentd);
    the Java nucleus resets to the recipe default and notifies subscribers."""
    stale_update_fails: bool
    """UpdateConfiguration older than the stored value fails with FailedUpdateConditionCheckError (Java
    ``ConfigStoreIPCEventStreamAgent``); lite's ggconfigd keeps the newer values and answers success."""
    validates_configuration: bool
    """SubscribeToValidateConfigurationUpdates and SendConfigurationValidityReport are served, and a
    configuration deployment waits for the components' reports (Java
    DynamicComponentConfigurationValidator)."""
    local_config_restarts: bool
    """A local configuration-only deployment (greengrass-cli, ggl-cli, IPC CreateLocalDeployment with
    ``componentToConfiguration``) restarts each component it changes. Neither core does: lite applies it live
    (measured: one SubscribeToConfigurationUpdate event per changed key, none for a RESET, no restart; its
    scripts read the configuration at the next start); the Java nucleus restarts only a component whose
    rendered lifecycle changed (GenericExternalService)."""
    cloud_config_restarts: bool
    """A cloud deployment (IoT jobs) of a changed configuration restarts each component it changes: lite may
    stop and restart the component (measured; emulated strictly, every time, after a ``reset-failed``); the
    Java nucleus carries it out as a local one."""
    merges_key_by_key: bool
    """A MERGE (deployment or UpdateConfiguration) is written one leaf at a time, each write followed by its
    event before the next is written, so a component reading between events sees part of it (lite's
    ggconfigd ``ggconfig_process_map``: one transaction per key). The Java nucleus applies the whole MERGE,
    then sends the events."""
    runs_shutdown: bool
    """The Shutdown step runs on stop (Java); lite: "'shutdown' phase isn't currently supported"."""
    access_control_refusal: str
    """InvalidArgumentsError text when a component updates its own ``accessControl`` over IPC."""
    unsupported_operations: frozenset[str]
    """Operations this core does not serve (answered ServiceError)."""
    hard_dependency_ends: str
    """What happens to a component when a HARD dependency of it goes bad (``gglocal.bindings``): "restart"
    (Java ``GreengrassService``: a STARTING or RUNNING dependent restarts when the dependency is no longer
    RUNNING, STOPPING or FINISHED, and waits for it to be ready again) or "stop" (lite's units are
    ``BindsTo=`` their HARD dependencies': when the dependency's process ends by itself, failed, killed or
    finished, the dependent is stopped and stays stopped until the next deployment)."""
    spools_offline: bool
    """PublishToIoTCore while the MQTT connection is down is accepted into a spooler and sent later, in order
    (Java ``Spool``: in memory by default, 2.5 MiB of payload; QoS 0 is refused while offline and dropped
    first when the spool is full; a QoS 1 message that does not fit is refused: gglocal's on-disk outbox,
    ``--spool-bytes``). Lite's iotcored keeps nothing: ServiceError (MQTT status not connected), measured;
    each connection is a clean session, so what was unacknowledged when it ended is not sent again."""
    max_qos1_in_flight: int | None
    """How many QoS 1 publishes may wait for their acknowledgement at once; one more is answered ServiceError
    at once, not queued (lite: 10, measured; iotcored's ``IOTCORED_MQTT_MAX_PUBLISH_RECORDS``). None: no
    such limit (the Java nucleus queues)."""
    qos1_in_flight_bytes: int | None
    """How many bytes of serialized QoS 1 publishes may wait for their acknowledgement (lite: iotcored's
    15,000-byte ``packet_store_buffer``, from its source); beyond it ServiceError at once. None: no limit."""


LITE = NucleusProfile(
    name="lite",
    core="lite",
    version="2.6.0",
    ipc_socket="gg-ipc.socket",
    legacy_socket_variable=False,
    ca_bundle_variable=True,
    exact_keys=True,
    yaml_strings=True,
    installs_archives=False,
    lite_scripts=True,
    errored_restarts=False,
    error_limit="start-limit",
    restart_delay_s=1.0,
    error_text=False,
    reset_deletes=True,
    stale_update_fails=False,
    validates_configuration=False,
    local_config_restarts=False,
    cloud_config_restarts=True,
    merges_key_by_key=True,
    runs_shutdown=False,
    access_control_refusal="Config update is not allowed for following field [accessControl]",
    unsupported_operations=VALIDATION_OPERATIONS | {"DeferComponentUpdate"},
    hard_dependency_ends="stop",
    spools_offline=False,
    max_qos1_in_flight=10,
    qos1_in_flight_bytes=15000,
)

CLASSIC = NucleusProfile(
    name="classic",
    core="classic",
    version="2.14.0",
    ipc_socket="ipc.socket",
    legacy_socket_variable=True,
    ca_bundle_variable=False,
    exact_keys=False,
    yaml_strings=False,
    installs_archives=True,
    lite_scripts=False,
    errored_restarts=True,
    error_limit="per-state",
    restart_delay_s=0.0,
    error_text=True,
    reset_deletes=False,
    stale_update_fails=True,
    validates_configuration=True,
    local_config_restarts=False,
    cloud_config_restarts=False,
    merges_key_by_key=False,
    runs_shutdown=True,
    access_control_refusal="Config update is not allowed for following fields [accessControl]",
    unsupported_operations=frozenset(),
    hard_dependency_ends="restart",
    spools_offline=True,
    max_qos1_in_flight=None,
    qos1_in_flight_bytes=None,
)

PROFILES = {p.name: p for p in (LITE, CLASSIC)}


def profile(name: str | NucleusProfile) -> NucleusProfile:
    """The profile named ``name`` ("lite" or "classic"); a profile passes through."""
    if isinstance(name, NucleusProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown nucleus {name!r}; use one of {', '.join(sorted(PROFILES))}") from None
