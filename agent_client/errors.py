"""The project's exception tree, documented in one place.

Every error the project raises on purpose derives from :class:`EdgeError`; each message says what went
wrong and what to do about it. Boundaries translate foreign exceptions (gRPC status codes, awsiotsdk
errors, OSError) into these with ``raise ... from exc``.

    EdgeError
    +-- ConfigError            invalid configuration (recipe configuration, CLI flags, agent options)
    +-- ManifestError          a model folder's manifest.json is missing, malformed, or wrong for the model
    +-- FrameError             a frame could not be read or decoded (skipped, counted, never fatal)
        +-- FrameTimeoutError       no frame arrived in time from a live source (reconnecting); not counted
    +-- SourceError            a frame source cannot be opened at all (missing folder, no images)
    +-- PublishError           a result could not be handed to the publisher (IPC or stdout); retried
        +-- PublishDeniedError      the core refused the topic (accessControl); never retried
        +-- PublishRejectedError    the core refused the message for good (invalid topic/payload); dropped
    +-- CoreError              an IPC call to the Greengrass core failed (connection, timeout, its error)
        +-- CoreUnsupportedError    the core does not offer the operation (nucleus lite: validation)
    +-- ModelOutputError       the model's outputs cannot be scores (NaN/inf, wrong width): a model failure
    +-- AgentError             the agent answered with an error or could not be reached
        +-- AgentUnavailableError   unreachable: nothing is serving on the socket, connection refused (start
        |                           the agent; the client retries within the deadline)
        +-- AgentTimeoutError       alive but not in time: the deadline passed before the agent answered
        |   |                       (overloaded, frozen, a big batch); retry later, with backoff
        |   +-- AgentBusyError          the agent refused the call for now: too many calls or bytes in flight
        |   |                           (RESOURCE_EXHAUSTED); same policy, retry later
        |   +-- ModelLoadingError       the model of that name is still loading (ABORTED); retry in a moment
        +-- AgentUntrustedError     the socket is served by a user the client does not trust, or lies in a
        |                           folder other users can write: nothing was sent (see the message)
        +-- ModelNotFoundError      no model of that name is loaded (LoadModel first)
        +-- ModelAlreadyLoadedError the name is taken by another model folder or package (UnLoadModel first)
        +-- InvalidRequestError     the agent rejected the request (bad tensor name/dtype/shape/size, path)
    +-- BackendError           a runtime backend failed to load or run a model (agent side)
        +-- BackendUnavailableError the backend's Python package is not installed (message names the extra)
    +-- RequestCancelledError  the caller went away, so the agent did not run or stopped the work (agent
    |                          side; gRPC CANCELLED, which no caller sees)
    +-- CaptureQueueFullError  the agent's capture queue is full; the capture was not accepted (agent side)
    +-- CaptureDisabledError   the agent runs without a capture folder (agent side)
    +-- RecipeError            a recipe or version a Greengrass core would refuse (build.py, gglocal)

Standard library only: build.py imports this module with the system python3.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(EdgeError):
    """Configuration is invalid; the message names the key and the accepted values."""


class ManifestError(EdgeError):
    """A model manifest is missing, malformed, or disagrees with the model it describes."""


class FrameError(EdgeError):
    """One frame could not be read or decoded. Loops skip the frame and count it."""


class FrameTimeoutError(FrameError):
    """A live source had no frame within its wait (e.g. a stream reconnecting); the loop just asks again."""


class SourceError(EdgeError):
    """A frame source cannot be opened (missing folder, unsupported URI, no images)."""


class PublishError(EdgeError):
    """A result could not be published."""


class PublishDeniedError(PublishError):
    """The core refused the publish (UnauthorizedError): the topic is not in the component's accessControl."""


class PublishRejectedError(PublishError):
    """The core refused the message for good (InvalidArgumentsError: a topic or payload it never takes)."""


class CoreError(EdgeError):
    """An IPC call to the Greengrass core failed; the message says which call and why, in our own words
    (nucleus lite sends errors without text)."""


class CoreUnsupportedError(CoreError):
    """The core does not offer this IPC operation (nucleus lite has no configuration validation)."""


class ModelOutputError(EdgeError):
    """The model produced outputs that cannot be scores (NaN or infinite values, a width that is not the
    number of labels): a failing model, never reported as "nothing detected"."""


class AgentError(EdgeError):
    """The agent answered with an error, or could not be reached."""


class AgentUnavailableError(AgentError):
    """Nothing answers on the agent socket (gRPC UNAVAILABLE)."""


class AgentTimeoutError(AgentError):
    """The agent is there but did not answer within the call's deadline (gRPC DEADLINE_EXCEEDED, or the
    client's own bound when a request cannot even be sent to a frozen agent). Unlike AgentUnavailableError
    the agent may still be working on the call: retry later, with backoff, rather than at once."""


class AgentBusyError(AgentTimeoutError):
    """The agent refused the call for now, before running it: too many calls or bytes in flight (gRPC
    RESOURCE_EXHAUSTED). A timeout's policy: retry later, with backoff, or send fewer/smaller requests."""


class ModelLoadingError(AgentTimeoutError):
    """A model of that name is still loading (gRPC ABORTED); retry the call in a moment."""


class AgentUntrustedError(AgentError):
    """The agent socket is served by a user the client does not trust (SO_PEERCRED), is owned by one, or lies
    in a folder other users may write without the sticky bit. Nothing was sent; the message names who serves
    there and what to do."""


class ModelNotFoundError(AgentError):
    """No model of that name is loaded in the agent (gRPC NOT_FOUND)."""


class ModelAlreadyLoadedError(AgentError):
    """A model of that name is already loaded (gRPC ALREADY_EXISTS)."""


class InvalidRequestError(AgentError):
    """The agent rejected the request's contents (gRPC INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...)."""


class BackendError(EdgeError):
    """A runtime backend failed to load or run a model."""


class BackendUnavailableError(BackendError):
    """The backend's Python package is not installed; the message names the extra to install."""


class RequestCancelledError(EdgeError):
    """The caller went away (deadline passed, call cancelled): the agent skipped or stopped the work."""


class CaptureQueueFullError(EdgeError):
    """The agent's capture queue is full; the capture was refused (gRPC RESOURCE_EXHAUSTED)."""


class CaptureDisabledError(EdgeError):
    """The agent was started without --capture-dir (gRPC FAILED_PRECONDITION)."""


class RecipeError(EdgeError):
    """A recipe, version or version range that a Greengrass core would refuse; the message names the rule."""
