"""A memory bank that starts empty: the queue of MoCo and the support set of NNCLR.

lightly's MemoryBankModule (a FIFO of the latest embeddings, gathered across GPUs when asked)
starts full of random unit vectors and answers with all of them until real embeddings have
replaced them. Random vectors are negatives that any output beats, a collapsed one included: on
the sample's 2-layer ViT, MoCo v2's loss started at 4.3 against a queue of 4,096 random keys
(log 4,097 = 8.3 would be chance) and its outputs collapsed within 8 steps (spread 0.46 -> 0.02)
while the queue was still seven-eighths random; its loss then rose to chance as real, collapsed
keys filled it. NNCLR's nearest neighbour in a random support set is a random positive. So the
bank here is lightly's, and it answers only with the entries it has been given: none at the
first step, the whole bank once it has wrapped.

The bank is not saved in checkpoints (lightly's buffers are not persistent): a resumed run
refills it from empty, which is the state it started from.
"""

from __future__ import annotations

import torch
from lightly.models.modules.memory_bank import MemoryBankModule


class FilledMemoryBank(MemoryBankModule):
    """A FIFO of the latest `size` embeddings of `dim`, answering with those it holds."""

    def __init__(self, size: int, dim: int, gather_distributed: bool = False):
        super().__init__((int(size), int(dim)), gather_distributed=gather_distributed, feature_dim_first=False)
        self.register_buffer("filled", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, output: torch.Tensor, update: bool = False) -> torch.Tensor:  # type: ignore[override]
        """The entries held before this call, (filled, dim); with `update`, `output` is added."""
        _, bank = super().forward(output, update=False)
        held = bank[: int(self.filled)]
        if update:
            self.add(output)
        return held

    @torch.no_grad()
    def add(self, output: torch.Tensor) -> None:
        before = int(self.bank_ptr)
        self._dequeue_and_enqueue(output.detach())
        after = int(self.bank_ptr)
        # The FIFO fills from index 0 up; once its pointer wraps, every entry is a real one.
        wrapped = after <= before or int(self.filled) >= self.size[0]
        self.filled.fill_(self.size[0] if wrapped else after)


__all__ = ["FilledMemoryBank"]
