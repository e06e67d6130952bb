"""What the embedding metrics share: their input checks and their synced state of embeddings and labels."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from silhouette_lightning.geometry.checks import check_finite_embeddings

# The embedding dtypes kept as they are (others are stored as float32); the index is their code in the
# (D, dtype) exchange before a DDP gather.
_STATE_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_same_dim(previous: list[Tensor] | Tensor, embeddings: Tensor, owner: str) -> None:
    """New embeddings must have the dimension of those already stored (a list state, or its cat)."""
    first = previous if isinstance(previous, Tensor) else (previous[0] if previous else None)
    if first is not None and first.ndim == 2 and first.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"{owner}: embeddings of dimension {embeddings.shape[1]} cannot be added to earlier ones of "
            f"dimension {first.shape[1]} (call reset() between different models)."
        )


class EmbeddingMetric(Metric):
    """A metric over all evaluated embeddings ``[N, D]`` and their labels ``[N]``.

    ``update`` checks a batch and keeps it in list states that torchmetrics concatenates across processes
    (``dist_reduce_fx="cat"``: ranks may hold different numbers of samples, or none); subclasses compute
    on :meth:`samples`, the whole (gathered) set, and return zeros with a warning when
    :attr:`has_samples` is False.

    State rules (tested for every subclass):

    * inputs must be dense float embeddings ``[B, D]`` (``D >= 1``) and integer labels ``[B]`` on one
      device; anything else is a ``ValueError`` saying what to pass (``.to_dense()``, ``.float()``, ...);
    * a batch that ``update()`` or ``forward()`` rejects leaves the accumulated state untouched;
    * ``set_dtype(...)`` converts the stored embeddings; the labels stay int64 (they are class indices);
    * under DDP a process that never called ``update()`` contributes no samples (the others' are used).
    """

    is_differentiable = False
    full_state_update = False

    embeddings: list[Tensor] | Tensor
    labels: list[Tensor] | Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        """Raise a clear ``ValueError`` for a batch this metric cannot use."""
        check_finite_embeddings(embeddings, labels, type(self).__name__)

    def _check_batch(self, embeddings: Tensor, labels: Tensor) -> None:
        self.check_inputs(embeddings, labels)
        check_same_dim(self.embeddings, embeddings, type(self).__name__)

    def update(self, embeddings: Tensor, labels: Tensor) -> None:
        """Store a batch: ``embeddings`` ``[B, D]`` (finite floats), ``labels`` ``[B]`` integers."""
        self._check_batch(embeddings, labels)
        if embeddings.dtype not in _STATE_DTYPES:  # e.g. float8: not worth a gather code of its own
            embeddings = embeddings.float()
        self.embeddings.append(embeddings.detach())
        # One label dtype on every rank, so that the gathered states concatenate.
        self.labels.append(labels.detach().long())

    def forward(self, embeddings: Tensor, labels: Tensor) -> Any:  # type: ignore[override]
        """torchmetrics' forward (value of this batch alone; the batch is also accumulated), after the
        checks: with ``full_state_update=False`` torchmetrics resets the state *before* calling
        ``update()`` on the batch, so a batch rejected there would take every earlier batch with it
        (and the dimension check would not see the earlier embeddings)."""
        self._check_batch(embeddings, labels)
        return super().forward(embeddings, labels)

    def _apply(self, fn: Callable, exclude_state: Sequence[str] = ()) -> nn.Module:
        """Device moves and ``set_dtype`` for the states, except that labels never change dtype.

        ``Metric.set_dtype`` uses ``Module.type``, which converts every tensor, integer ones included:
        float labels would be refused by ``compute()`` (and float16 cannot even hold class indices above
        2048 exactly). The labels follow only the device of ``fn``, as torchmetrics' own metrics with
        special states do through ``exclude_state``.
        """
        this = super()._apply(fn, exclude_state=(*exclude_state, "labels"))

        def move(t: Tensor) -> Tensor:
            return t.to(fn(t[:0]).device)  # the device fn would give, with the dtype kept

        labels = this.labels
        this.labels = move(labels) if isinstance(labels, Tensor) else [move(t) for t in labels]
        return this

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any = None) -> None:
        """torchmetrics' gather, made safe for processes with no samples.

        torchmetrics gives a process whose list state is empty a 1-D float placeholder, whose shape and
        dtype differ from the other processes' ``[n, D]`` embeddings and int64 labels, so the gather
        fails. The processes first exchange ``(D, dtype)`` (one tiny gather), then an empty process
        contributes ``[0, D]`` / ``[0]`` tensors of the agreed kind. Every process sees the same
        exchange, so they all take the same branch (no hang): all empty -> nothing is gathered and
        ``compute()`` reports no samples; different ``D`` -> the same ``ValueError`` on every process.
        """
        local = self.embeddings
        if isinstance(local, list):
            local = dim_zero_cat(local) if local else None
        header = torch.tensor(
            [-1, -1] if local is None else [local.shape[1], _STATE_DTYPES.index(local.dtype)],
            device=self.device,
        )
        headers = dist_sync_fn(header, group=process_group or self.process_group)
        present = [(int(h[0]), _STATE_DTYPES[int(h[1])]) for h in headers if int(h[0]) >= 0]
        if not present:
            return
        dims = sorted({dim for dim, _ in present})
        if len(dims) > 1:
            raise ValueError(
                f"{type(self).__name__}: the processes hold embeddings of different dimensions {dims}; "
                "every process must evaluate the same model (call reset() between models)."
            )
        dtype = functools.reduce(torch.promote_types, [dtype for _, dtype in present])
        if local is None:
            self.embeddings = [torch.zeros(0, dims[0], dtype=dtype, device=self.device)]
            self.labels = [torch.zeros(0, dtype=torch.long, device=self.device)]
        else:
            self.embeddings = [local.to(dtype)]
        super()._sync_dist(dist_sync_fn, process_group=process_group)

    @property
    def has_samples(self) -> bool:
        """Whether any sample was stored (on any process, after a sync); empty batches do not count."""
        # After a DDP sync the states are single tensors; before it, lists (maybe empty).
        state = self.embeddings
        return (state.shape[0] if isinstance(state, Tensor) else sum(t.shape[0] for t in state)) > 0

    def samples(self) -> tuple[Tensor, Tensor]:
        """All embeddings ``[N, D]`` and labels ``[N]`` seen (on every process after a sync); needs
        :attr:`has_samples`."""
        if not self.has_samples:
            raise ValueError(f"{type(self).__name__} has no samples: call update() with a batch first.")
        return dim_zero_cat(self.embeddings), dim_zero_cat(self.labels)

    def warn_no_samples(self) -> None:
        """The warning of ``compute()`` without samples, whose result is then zeros (torchmetrics'
        convention: an empty validation epoch must not crash training)."""
        rank_zero_warn(
            f"{type(self).__name__}.compute() was called without any samples; returning 0.", UserWarning
        )
