"""A checkpoint trained on other classes than the data now configured: predict adapts, the rest refuse.

The classifier (and class-bound loss terms such as proxies) are sized by ``num_classes``, which the CLI
links from the data. ``silhouette-fit predict --ckpt_path X --data.root <other folder>`` therefore builds
them for the *new* folder's class count, and loading the checkpoint failed with a raw
``size mismatch for classifier.weight``. Predict only needs the backbone and head, so there the
classifier is rebuilt at the checkpoint's size and class-bound tensors the loop never uses keep their
fresh values; fit, validate and test compare labels with the classifier and refuse with a clear message.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from silhouette_lightning.errors import ConfigError

CLASSIFIER_WEIGHT = "classifier.weight"


def adapt_to_checkpoint_classes(module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Call from ``on_load_checkpoint`` (before Lightning loads ``checkpoint["state_dict"]``)."""
    state = checkpoint.get("state_dict") or {}
    saved = state.get(CLASSIFIER_WEIGHT)
    classifier: nn.Linear = module.classifier
    if saved is None or saved.shape == classifier.weight.shape:
        return
    trained, configured = int(saved.shape[0]), int(classifier.out_features)
    trainer = module._trainer
    if trainer is None or not trainer.predicting:
        raise ConfigError(
            f"The checkpoint was trained on {trained} classes but the data now has {configured} "
            "(data.num_classes, from the configured data set). fit, validate and test need the classes the "
            "model was trained on: point data at them. To embed images of other classes, use "
            "`silhouette-fit predict` or `silhouette-embed CHECKPOINT FOLDER --output DIR`."
        )
    module.classifier = nn.Linear(
        classifier.in_features, trained, device=classifier.weight.device, dtype=classifier.weight.dtype
    )
    own = module.state_dict()
    # Loss terms (proxies) and metric states sized by the class count: unused by predict_step.
    kept = [key for key, value in state.items() if key in own and own[key].shape != value.shape]
    for key in kept:
        state[key] = own[key]
    rank_zero_info(
        f"predict: the checkpoint was trained on {trained} classes, the data has {configured}; the "
        "embeddings do not depend on that (the classifier is rebuilt at the checkpoint's size"
        f"{', ' + str(len(kept)) + ' class-bound loss tensor(s) are not loaded' if kept else ''})."
    )
