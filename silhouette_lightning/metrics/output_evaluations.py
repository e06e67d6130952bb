"""Which representations validation and test measure (``model.eval_output``): one
:class:`EmbeddingEvaluation` per stage and representation, and the names they are logged under."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.geometry.checks import check_choice
from silhouette_lightning.metrics.embedding_evaluation import EmbeddingEvaluation
from silhouette_lightning.metrics.fewshot import FewShotSettings
from silhouette_lightning.terms.outputs import ModelOutputs

REPRESENTATIONS = ("embeddings", "features")
STAGES = ("val", "test")


def parse_eval_output(eval_output: str | list[str]) -> tuple[str, ...]:
    """``model.eval_output`` as a tuple of distinct, valid representation names."""
    names = [eval_output] if isinstance(eval_output, str) else list(eval_output)
    bad = [name for name in names if name not in REPRESENTATIONS]
    if not names or bad or len(set(names)) != len(names):
        raise ConfigError(
            f"model.eval_output={eval_output!r} is not supported; give one of {list(REPRESENTATIONS)} or a "
            "list of distinct ones, e.g. [embeddings, features]."
        )
    return tuple(names)


class OutputEvaluations(nn.Module):
    """The embedding evaluations of validation and test, one per evaluated representation.

    A single ``eval_output`` name logs ``<stage>/<metric>`` (the historical names, which configs'
    checkpoint monitors use); a list logs ``<stage>/<representation>/<metric>`` for each. Few-shot accuracy
    is measured at test, and at validation too with ``fewshot.val``.

    Args:
        eval_output: ``"embeddings"``, ``"features"``, or a list of distinct ones (``model.eval_output``).
        fewshot: the keys of :class:`FewShotSettings` (``model.fewshot``), or None for no few-shot accuracy.
    """

    def __init__(self, eval_output: str | list[str], fewshot: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.outputs = parse_eval_output(eval_output)
        self.prefixed = not isinstance(eval_output, str)
        fewshot = None if fewshot is None else FewShotSettings.from_config(fewshot, "model.fewshot")
        self.fewshot = fewshot
        fewshot_at = {"test": fewshot, "val": fewshot if fewshot is not None and fewshot.val else None}
        self.evaluations = nn.ModuleDict(
            {
                f"{stage}_{output}": EmbeddingEvaluation(fewshot=fewshot_at[stage])
                for stage in STAGES
                for output in self.outputs
            }
        )

    def get(self, stage: str, output: str | None = None) -> EmbeddingEvaluation:
        """The evaluation of ``output`` (default: the first evaluated representation) at ``stage``."""
        check_choice("stage", stage, STAGES)
        return self.evaluations[f"{stage}_{output or self.outputs[0]}"]

    def update(self, stage: str, outputs: ModelOutputs, labels: Tensor) -> None:
        # First view only, so that the metrics mean the same with and without multi-view data.
        for output in self.outputs:
            self.get(stage, output).update(outputs.get(output)[:, 0], labels)

    def _prefix(self, stage: str, output: str) -> str:
        return f"{stage}/{output}/" if self.prefixed else f"{stage}/"

    def logged_names(self, stage: str) -> list[str]:
        """The names :meth:`log_and_reset` logs at ``stage``, known before any sample (none at ``train``)."""
        check_choice("stage", stage, ("train", *STAGES))
        if stage == "train":
            return []
        return [
            self._prefix(stage, out) + name for out in self.outputs for name in self.get(stage, out).names()
        ]

    def log_and_reset(self, stage: str, log: Callable[..., None]) -> None:
        """Compute every metric of ``stage`` and ``log(name, value, on_epoch=True, prog_bar=...)`` it
        (``LightningModule.log``; the first representation's silhouette goes to the progress bar), then reset
        the evaluations. Each gathers all processes' samples, so the values are global."""
        for output in self.outputs:
            evaluation = self.get(stage, output)
            for name, value in evaluation.compute().items():
                bar = name == "silhouette" and output == self.outputs[0]
                log(self._prefix(stage, output) + name, value.float(), on_epoch=True, prog_bar=bar)
            evaluation.reset()
