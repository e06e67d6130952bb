"""The LightningModule: wires backbone -> outputs (features, embeddings, logits) -> objective -> metrics."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from silhouette_lightning.checkpoint_classes import adapt_to_checkpoint_classes
from silhouette_lightning.errors import ConfigError
from silhouette_lightning.metrics.embedding_evaluation import EmbeddingEvaluation
from silhouette_lightning.metrics.fewshot_splits import check_fewshot_splits
from silhouette_lightning.metrics.output_evaluations import OutputEvaluations
from silhouette_lightning.models import Backbone, ProjectionHead
from silhouette_lightning.optimization import configure_optimization
from silhouette_lightning.terms import LossTerm, ModelOutputs
from silhouette_lightning.terms.objective import Objective

try:  # set while LightningCLI instantiates the model: hparams are then the parsed config, not objects
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
except ImportError:  # pragma: no cover - older/newer Lightning without it
    _given_hyperparameters = None

# Arguments that are objects (modules, callables); outside the CLI they are not saved as hyperparameters.
_OBJECT_ARGUMENTS = ["backbone", "losses", "optimizer", "lr_scheduler"]


class EmbeddingModule(LightningModule):
    """Representation learner: a backbone, a projection head, a linear classifier and weighted loss terms.

    Args:
        backbone: feature extractor (``SmallCNN``, ``TorchvisionBackbone``, any ``models.Backbone``).
        num_classes: number of classes (linked from ``data.num_classes`` by the CLI).
        losses: the terms of the objective; default: cross-entropy alone.
        embedding_dim: width of the projection head's output (the learned embedding).
        head_hidden_dim: hidden width of the head (default: the backbone's feature width).
        head_layers: linear layers in the head (1 = a linear projection).
        optimizer: a callable ``params -> Optimizer`` (``class_path``/``init_args`` in configs).
        lr_scheduler: optional callable ``optimizer -> LRScheduler``, stepped every epoch.
        online_linear_eval: train the classifier on *detached* features with its own cross-entropy
            (``<stage>/loss/linear_eval``, in the backward pass but not in ``<stage>/loss``): a pure
            metric-learning run reports ``acc`` without the classifier shaping it. No term may read logits.
        eval_output: what validation and test measure (``silhouette``, ``precision_at_1``, ``recall_at_<k>``,
            ``map_at_r``, ``r_precision``, ``nmi``, ``ami``): the head's ``embeddings`` (default) or the
            backbone's ``features`` (where no term trains the head, e.g. cross-entropy alone). A list
            ``[embeddings, features]`` logs ``<stage>/<name>/<metric>`` for each, a single name
            ``<stage>/<metric>``. The plots callback draws the first listed one.
        fewshot: N-way K-shot accuracy (nearest class mean, seeded episodes), ``test/fewshot_<N>way_<K>shot``
            (at validation too with ``val: true``). Keys (defaults): ``ways`` ([5]), ``shots`` ([1]),
            ``queries`` per class and episode (15; null: all the others), ``episodes`` (500), ``seed`` (0),
            ``val`` (false); ``{}``: the defaults; null (default): off. Checked against the data before fit.
        on_nonfinite: a NaN/inf training loss term, or gradient with finite losses (not checked under
            ``16-mixed``, whose scaler skips such steps): ``"stop"`` the run naming the term and the step, or
            ``"skip"`` the step with a warning (no parameter changes; it counts in ``global_step``), on every
            process together under DDP.
        max_consecutive_skips: with ``skip``, this many skipped steps in a row stop the run (diverged).
        report_accuracy: log ``<stage>/acc``, the classifier's top-1. ``false`` where the classifier is never
            trained (``configs/method/introspection.yaml``: chance level). A flag, not inferred: Lightning
            restores no "was trained" state, and a metric that comes and goes breaks ``checkpoint.monitor``
            and CSV columns. With ``fit``, monitor another metric than the default ``val/acc``.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        losses: list[LossTerm] | None = None,
        embedding_dim: int = 128,
        head_hidden_dim: int | None = None,
        head_layers: int = 2,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        online_linear_eval: bool = False,
        eval_output: str | list[str] = "embeddings",
        on_nonfinite: Literal["stop", "skip"] = "stop",
        report_accuracy: bool = True,
        max_consecutive_skips: int = 10,
        fewshot: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        given = _given_hyperparameters.get() if _given_hyperparameters is not None else None
        self.save_hyperparameters(ignore=[] if given is not None else _OBJECT_ARGUMENTS)
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}.")
        self.num_classes, self.report_accuracy = num_classes, report_accuracy
        self.online_linear_eval = online_linear_eval
        self.backbone = backbone
        self.head = ProjectionHead(backbone.num_features, embedding_dim, head_hidden_dim, head_layers)
        self.classifier = nn.Linear(backbone.num_features, num_classes)
        widths = {"features": backbone.num_features, "embeddings": embedding_dim, "logits": num_classes}
        self.objective = Objective(losses, widths, online_linear_eval, on_nonfinite, max_consecutive_skips)
        self.losses = self.objective.terms  # registered here: checkpoints keep their keys losses.<i>.*
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        accuracy = partial(MulticlassAccuracy, num_classes, average="micro")
        self.train_acc, self.val_acc, self.test_acc = accuracy(), accuracy(), accuracy()
        self.embedding_evaluations = OutputEvaluations(eval_output, fewshot)
        self.eval_output = self.embedding_evaluations.outputs[0]  # what predict and the plots use
        evaluates_head = "embeddings" in self.embedding_evaluations.outputs
        self.objective.freeze_untrained(self.head, self.classifier, evaluates_head, report_accuracy)

    def encode(self, images: Tensor) -> ModelOutputs:
        """Run images ``[B, 3, H, W]`` or multi-view images ``[B, V, 3, H, W]`` through the model, all views
        through the backbone in one pass (BatchNorm sees the whole batch)."""
        if images.ndim == 4:
            images = images.unsqueeze(1)
        if images.ndim != 5:
            raise ValueError(f"Expected images [B, 3, H, W] or [B, V, 3, H, W], got {tuple(images.shape)}.")
        batch, views = images.shape[:2]
        features = self.backbone(images.flatten(0, 1))
        embeddings = self.head(features)
        logits = self.classifier(features.detach() if self.online_linear_eval else features)
        return ModelOutputs(*(t.unflatten(0, (batch, views)) for t in (features, embeddings, logits)))

    def forward(self, images: Tensor) -> Tensor:
        """The embedding ``[B, embedding_dim]`` of images ``[B, 3, H, W]``."""
        return self.head(self.backbone(images))

    def evaluation(self, stage: str) -> EmbeddingEvaluation:
        """The evaluation of ``stage`` (``val``, ``test``), first ``eval_output``: what the plots draw."""
        return self.embedding_evaluations.get(stage)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "train", self.train_acc)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "test", self.test_acc)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``"embeddings"``: the representation that validation and test measure (``eval_output``)."""
        images, labels = batch
        return {"embeddings": self.encode(images).get(self.eval_output)[:, 0], "labels": labels}

    def _shared_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str, accuracy) -> Tensor:
        images, labels = batch
        # Unseen test classes (data.unseen_classes): no classifier outputs for them, the embedding alone.
        if stage == "test" and getattr(self._datamodule, "test_on_unseen_classes", False):
            self.embedding_evaluations.update("test", self.encode(images), labels)
            return torch.zeros((), device=images.device)
        if batch_idx == 0:  # once per loop
            self.objective.check_labels(labels)
        outputs = self.encode(images)
        value = self.objective(outputs, labels)
        if stage == "train" and not self.objective.nonfinite.losses_finite(value.checked, self._trainer):
            return self.objective.nonfinite.skipped_step_loss(self.parameters())
        # Epoch means averaged over all processes: every rank must see the same val/loss, or they disagree
        # on the best checkpoint (whose file name holds it) and test_after_fit fails on the others.
        per_epoch = dict(on_step=False, on_epoch=True, batch_size=len(labels))
        for name, logged in value.logged().items():
            self.log(f"{stage}/{name}", logged, prog_bar=name == "loss", sync_dist=True, **per_epoch)
        # Accuracy and embedding metrics of the first view only: the same with and without multi-view data.
        if stage != "train":
            self.embedding_evaluations.update(stage, outputs, labels)
        if self.report_accuracy:
            accuracy(outputs.logits[:, 0].detach(), labels)
            self.log(f"{stage}/acc", accuracy, prog_bar=True, **per_epoch)
        return value.total

    @property
    def _datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None)

    def on_after_backward(self) -> None:
        self.objective.nonfinite.after_backward(self.parameters())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.objective.nonfinite.before_optimizer_step(self.parameters(), self.trainer)

    def setup(self, stage: str) -> None:
        check_fewshot_splits(self.embedding_evaluations.fewshot, self._datamodule, stage)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        adapt_to_checkpoint_classes(self, checkpoint)

    def on_train_start(self) -> None:
        self.objective.check_memories_fit(self.trainer.train_dataloader)

    def on_validation_epoch_end(self) -> None:
        self.embedding_evaluations.log_and_reset("val", self.log)

    def on_test_epoch_end(self) -> None:
        self.embedding_evaluations.log_and_reset("test", self.log)

    def logged_metric_names(self, stage: str) -> list[str]:
        """The names this module logs in ``stage`` (``train``, ``val``, ``test``), e.g. to check a
        ``checkpoint.monitor`` before training (a test on unseen classes logs the embedding metrics only)."""
        names = [*self.objective.logged_names(), *(["acc"] if self.report_accuracy else [])]
        return [f"{stage}/{name}" for name in names] + self.embedding_evaluations.logged_names(stage)

    def configure_optimizers(self) -> Any:
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        return configure_optimization(self.parameters(), self.optimizer, self.lr_scheduler, max_epochs)
