"""Model hot swap: load the new model beside the old one, switch between frames, then unload the old.

Everything that can fail (manifest, digest, labels, LoadModel on the agent) happens before the switch,
so a bad update leaves the running model untouched; the switch itself is a handful of assignments made
by the run loop between two frames, so no frame is lost or classified by a half-swapped pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent_client import AgentClient
from modelpkg.manifest import ModelManifest, load_labels, load_manifest, verify_sha256

from .classify import RemoteModel
from .preprocess import Preprocessor
from .results import ModelIdentity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedModel:
    manifest: ModelManifest
    labels: tuple[str, ...]
    model: RemoteModel
    preprocessor: Preprocessor
    identity: ModelIdentity


def prepare_model(client: AgentClient, folder: Path, name: str, running: str) -> PreparedModel:
    """Checks and loads the model in folder on the agent under name (or the manifest's), never `running`.

    The running model keeps its agent-side name until it is unloaded, so the incoming one gets a name of
    its own: when both would be called the same, the new one's digest is appended.
    """
    manifest = load_manifest(folder)
    verify_sha256(manifest)
    labels = load_labels(manifest)
    agent_name = name or manifest.name
    if agent_name == running:
        agent_name = f"{agent_name}-{manifest.sha256[:8]}"
    model = RemoteModel(client, manifest, agent_name)
    model.ensure_loaded()
    logger.info("model %s %s loaded beside %s", agent_name, manifest.version, running)
    return PreparedModel(
        manifest=manifest,
        labels=labels,
        model=model,
        preprocessor=Preprocessor(manifest.preprocess, manifest.input.shape),
        identity=ModelIdentity(agent_name, manifest.version, manifest.sha256),
    )
