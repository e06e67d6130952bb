"""A cross-batch memory: a FIFO queue of recent detached embeddings that a batch loss uses as references.

With many classes and few samples of each in a batch, the silhouette's class means ``a_i`` and ``b_i``
(and SupCon's positives) rest on one or two references per class and are noisy. The memory keeps the
last ``size`` embeddings and labels the loss consumed (Wang et al. 2020, "Cross-Batch Memory"), so

    references = (current batch, with gradient)  ∪  (memory, detached)

while the anchors, and the mean over valid anchors, stay the current batch's. The batch is enqueued
*after* the loss is computed, so no sample meets its own copy from the same step. A sample's copy from an
earlier epoch is among the references when it was among the last ``size`` samples seen (rare while
``size`` is small against the training set, certain for every sample when it is larger, which is why a
memory larger than the training set is a configuration error).

Under DDP the loss enqueues the *gathered global* batch, which is identical on every process, so the
queues stay identical without any communication. Pure PyTorch: the queue is registered buffers, so
``state_dict`` (and so a Lightning checkpoint) saves and restores it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError


def check_memory_size(memory_size: int) -> int:
    """``memory_size`` as an int >= 0 (0 = no memory), or a :class:`ConfigError` naming the key."""
    if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 0:
        raise ConfigError(
            f"memory_size must be an integer >= 0 (the number of recent embeddings kept as extra references; "
            f"0 turns the cross-batch memory off), got {memory_size!r}."
        )
    return memory_size


class CrossBatchMemory(nn.Module):
    """FIFO queue of the last ``size`` embeddings ``[size, D]`` and labels ``[size]``, detached.

    Buffers: ``embeddings`` (float32, or float64 for float64 inputs; allocated on the first
    :meth:`enqueue`, on the inputs' device, so ``D`` need not be known up front), ``labels`` (int64),
    ``position`` (next slot to write) and ``count`` (filled slots, at most ``size``). Reading the
    position and count costs one host synchronisation per step on an accelerator.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        size = check_memory_size(size)
        if size == 0:
            raise ConfigError("CrossBatchMemory needs size >= 1; a loss with memory_size=0 has no memory.")
        self.size = size
        self.register_buffer("embeddings", torch.zeros(size, 0))
        self.register_buffer("labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def __len__(self) -> int:
        return int(self.count)

    def contents(self) -> tuple[Tensor, Tensor]:
        """The stored ``(embeddings [n, D], labels [n])``, oldest first; new tensors, not views.

        New tensors because :meth:`enqueue` writes into the buffers in place, which must not change a
        tensor that a graph has saved for its backward.
        """
        count, position = int(self.count), int(self.position)
        if count < self.size:  # not yet wrapped: slots 0 .. count-1 in insertion order
            return self.embeddings[:count].clone(), self.labels[:count].clone()
        order = torch.cat([self.embeddings[position:], self.embeddings[:position]])
        return order, torch.cat([self.labels[position:], self.labels[:position]])

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor) -> None:
        """Append ``embeddings`` ``[n, D]`` / ``labels`` ``[n]`` (detached), dropping the oldest entries.

        A batch with a non-finite value is not enqueued: one NaN in the queue would make every later loss
        NaN (the step itself is stopped or skipped by the module's ``on_nonfinite``). Under DDP every
        process enqueues the same gathered batch, so they all take the same decision.
        """
        embeddings = embeddings.detach()
        if not bool(torch.isfinite(embeddings).all()):
            return
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        if self.embeddings.shape[1] != embeddings.shape[1]:
            if int(self.count) > 0:
                raise ValueError(
                    f"CrossBatchMemory holds embeddings of dimension {self.embeddings.shape[1]}, got "
                    f"{embeddings.shape[1]}."
                )
            # On the buffers' device (the module's), wherever the batch lives.
            width, device = embeddings.shape[1], self.labels.device
            self.embeddings = torch.zeros(self.size, width, dtype=dtype, device=device)
        # A batch larger than the memory: only its newest (last) rows fit.
        embeddings, labels = embeddings[-self.size :], labels.detach()[-self.size :]
        n = embeddings.shape[0]
        position = int(self.position)
        slots = (position + torch.arange(n, device=self.labels.device)) % self.size
        self.embeddings[slots] = embeddings.to(self.embeddings)
        self.labels[slots] = labels.to(self.labels)
        self.position.fill_((position + n) % self.size)
        self.count.fill_(min(int(self.count) + n, self.size))

    def references(
        self, batch: Tensor, batch_labels: Tensor, self_index: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(references [M + n, D], labels [M + n], self_index)``: the batch's references followed by the
        memory's contents. ``batch`` ``[M, D]`` (the anchors, or the gathered global batch under DDP) keeps
        its gradient; the anchors' positions in it, ``self_index``, stay valid because the memory comes
        after it. An empty memory returns the batch's references as they are, so the first step is
        exactly the loss without memory."""
        if len(self) == 0:
            return batch, batch_labels, self_index
        stored, stored_labels = self.contents()
        dtype = torch.promote_types(batch.dtype, torch.float32)
        refs = torch.cat([batch.to(dtype), stored.to(device=batch.device, dtype=dtype)])
        return refs, torch.cat([batch_labels, stored_labels.to(batch_labels)]), self_index

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # The embedding width is only known once data has flowed: take the stored queue's shape, so that a
        # fresh module loads a checkpoint. A queue of a different size is a config change, not a width.
        stored = state_dict.get(prefix + "embeddings")
        if stored is not None and stored.shape[0] != self.size:
            raise ConfigError(
                f"The checkpoint's cross-batch memory holds {stored.shape[0]} entries but memory_size is "
                f"{self.size}: set memory_size to {stored.shape[0]}, or load the weights without the memory."
            )
        if stored is not None and stored.shape != self.embeddings.shape:
            self.embeddings = torch.zeros_like(stored, device=self.embeddings.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
