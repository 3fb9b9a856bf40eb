"""Where the model package and the sample images are: ModelPath when set; under Greengrass, the ModelVariant
of the deployed model component; else the packages bundled with the project.

The model component's install step (recipes/install-model.sh) publishes its packages as
`<greengrass root>/work/edgeclassifier.Model.EfficientNetLite0/current/<variant>` (symlinks to wherever the
core unpacked them, or to where the step unpacked them itself when the core did not), so the inference
component needs no cross-component recipe variable (nucleus lite substitutes none) and no path with a root
or a version in it. A new version of the model component re-points `current`: `model_folder()` resolves
anew each time it is asked, and the run loop swaps to the new package when the resolved folder changes.
The recipe gives the root as EDGECLASSIFIER_GG_ROOT ({kernel:rootPath}, which both cores substitute).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from agent_client.sockets import GG_ROOT_ENV

ROOT = Path(__file__).resolve().parent.parent
MODEL_COMPONENT = "edgeclassifier.Model.EfficientNetLite0"
AGENT_COMPONENT = "edgeclassifier.Agent"
# ModelVariant -> the bundled folder (the Neo one is per CPU: <folder>-<uname -m>)
VARIANTS = {"fp32": "efficientnet-lite0", "int8": "efficientnet-lite0-int8", "neo": "efficientnet-lite0-neo"}


def greengrass_root() -> Path | None:
    value = os.environ.get(GG_ROOT_ENV, "")
    return Path(value) if value else None


def bundled_images() -> Path:
    """The sample images: artifacts/images in a source checkout, images/ in the deployed component."""
    for candidate in (ROOT / "artifacts" / "images", ROOT / "images"):
        if candidate.is_dir():
            return candidate
    return ROOT / "artifacts" / "images"


def bundled_model(variant: str) -> Path:
    folder = VARIANTS[variant]
    if variant == "neo":
        folder = f"{folder}-{platform.machine()}"
    return ROOT / "artifacts" / "models" / folder


def deployed_model(variant: str) -> Path | None:
    root = greengrass_root()
    return None if root is None else root / "work" / MODEL_COMPONENT / "current" / variant


def model_folder(model_path: Path | None, variant: str) -> Path:
    """The folder to load: ModelPath, else the deployed model component's variant, else the bundled one."""
    if model_path is not None:
        return model_path
    return deployed_model(variant) or bundled_model(variant)


def deployed_agent_socket() -> Path | None:
    """The deployed agent's socket (its recipe's default), inside the agent's work folder."""
    root = greengrass_root()
    return None if root is None else root / "work" / AGENT_COMPONENT / "agent.sock"
