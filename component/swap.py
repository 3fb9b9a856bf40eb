"""The model the run loop classifies with, and how it is replaced without losing a frame.

`prepare_model` does everything that can fail (manifest, every file's digest, labels, LoadModel on the agent,
the agent's description checked against the manifest) before anything changes, so a bad package leaves the
running model untouched. The result is an `ActiveModel`, which the loop takes between two batches; the
previous one is unloaded after the switch.

Agent-side names: the running model keeps its name until it is unloaded, so the incoming one gets a name of
its own when both would be called the same (the new package's digest appended). A name chosen by the
component (ModelName empty) is owned by it and reclaimed from an older package (see classify.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from agent_client import AgentClient
from agent_client.errors import AgentError
from modelpkg.manifest import ModelManifest, load_labels, load_manifest, verify_files

from .classify import RemoteModel
from .pipeline import FramePipeline
from .preprocess import Preprocessor
from .results import ModelIdentity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveModel:
    """What classifying with one model package needs; replaced whole, never changed in place."""

    folder: Path  # as configured (may be a symlink such as .../current/fp32)
    resolved: str  # the folder it resolved to when loaded
    manifest: ModelManifest
    labels: tuple[str, ...]
    model: RemoteModel
    pipeline: FramePipeline
    identity: ModelIdentity

    @property
    def name(self) -> str:
        return self.model.name

    def moved(self) -> bool:
        """Whether the configured folder now resolves elsewhere (a new version of the model component)."""
        return os.path.realpath(self.folder) != self.resolved


def read_package(folder: Path) -> tuple[ModelManifest, tuple[str, ...]]:
    """The package's manifest and labels, every file checked against its digest (the model file too: the
    agent of the SageMakerEdgeManager variant checks none)."""
    manifest = load_manifest(folder)
    verify_files(manifest)
    return manifest, load_labels(manifest)


def prepare_model(
    client: AgentClient,
    folder: Path,
    name: str,
    top_k: int,
    threshold: float,
    running: str | None = None,
) -> ActiveModel:
    """Checks and loads the package in folder on the agent under name (or the manifest's), never under
    `running`, the name of the model in use; ManifestError or AgentError when it cannot be used."""
    resolved = os.path.realpath(folder)
    manifest, labels = read_package(folder)
    agent_name = name or manifest.name
    if agent_name == running:
        agent_name = f"{agent_name}-{manifest.sha256[:8]}"
    model = RemoteModel(client, manifest, agent_name, owned=not name)
    model.ensure_loaded()
    pipeline = FramePipeline(
        Preprocessor(manifest.preprocess, manifest.input.shape), model, labels, top_k, threshold
    )
    identity = ModelIdentity(agent_name, manifest.version, manifest.sha256)
    logger.info("model %s %s ready (%s)", agent_name, manifest.version, resolved)
    return ActiveModel(Path(folder), resolved, manifest, labels, model, pipeline, identity)


def retire(client: AgentClient, outgoing: ActiveModel) -> None:
    """Unloads a model that is no longer used; a failure is logged (the agent frees it when it restarts)."""
    try:
        client.unload_model(outgoing.name)
        logger.info("unloaded the previous model %s", outgoing.name)
    except AgentError as exc:
        logger.warning("could not unload the previous model %s: %s", outgoing.name, exc)
