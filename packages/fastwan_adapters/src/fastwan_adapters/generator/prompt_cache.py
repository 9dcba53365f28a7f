"""Prompt embeddings kept in memory by (model, prompt), least recently used first out.

The orchestrator repeats prompts, and on the 24 GB and 10-16 GB memory profiles every
encoding streams the 10.6 GB text encoder over PCIe: seconds on the x4/x1 risers of rented
consumer rigs. A cached embedding (512 tokens x 4096 x bf16 = 4 MiB) skips all of that.

Entries live in CPU memory, never on the GPU: on a 10-16 GB card every megabyte of GPU memory
is the transformer's, and moving 4 MiB back to the GPU on a hit takes about a millisecond.
An entry is an exact copy of what was encoded, in its dtype, and a hit returns it on the
device and in the dtype it was encoded on (or those asked for): a hit gives the very tensor
a miss would have given, bit for bit, so the same job gives the same video either way.

Thread-safe: one lock guards the table; encoding on a miss runs outside it, so a slow
encoding never blocks other lookups (two threads missing on the same prompt both encode, and
the second store replaces the first with an equal tensor).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import attrs
import torch

__all__ = ["PromptCache"]


@attrs.frozen(eq=False)  # never compare tensors by ==
class _Entry:
    embeds: torch.Tensor  # on the CPU, in the encoded dtype
    device: torch.device  # where it was encoded
    nbytes: int


class PromptCache:
    """An LRU of prompt embeddings bounded by ``max_bytes`` (0: disabled, every lookup a miss).

    ``model_id`` must name everything besides the prompt that changes the embedding (the
    model, and the text encoder's precision if that can differ).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 (disabled) or more, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of embeddings held now."""
        with self._lock:
            return self._used

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(
        self,
        model_id: str,
        prompt: str,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor | None:
        """The cached embedding (a fresh copy, on ``device`` / in ``dtype``, by default those it
        was encoded on and in), marked most recently used; None when not cached."""
        with self._lock:
            entry = self._entries.get((model_id, prompt))
            if entry is None:
                return None
            self._entries.move_to_end((model_id, prompt))
        target = entry.device if device is None else torch.device(device)
        return entry.embeds.to(device=target, dtype=entry.embeds.dtype if dtype is None else dtype, copy=True)

    def put(self, model_id: str, prompt: str, embeds: torch.Tensor) -> None:
        """Keep a copy of ``embeds``, evicting the least recently used entries until it fits;
        an embedding larger than the whole bound is not kept."""
        nbytes = embeds.numel() * embeds.element_size()
        if self.max_bytes == 0 or nbytes > self.max_bytes:
            with self._lock:
                self._drop((model_id, prompt))  # an older, smaller value must not stay behind
            return
        entry = _Entry(embeds.detach().to("cpu", copy=True), embeds.device, nbytes)
        with self._lock:
            self._drop((model_id, prompt))
            while self._used + nbytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._used -= evicted.nbytes
            self._entries[(model_id, prompt)] = entry
            self._used += nbytes

    def lookup_or_encode(
        self, model_id: str, prompt: str, encode: Callable[[], torch.Tensor]
    ) -> tuple[torch.Tensor, bool]:
        """The embedding of ``prompt`` and whether it was a hit; ``encode()`` runs on a miss."""
        if (cached := self.get(model_id, prompt)) is not None:
            return cached, True
        embeds = encode()
        self.put(model_id, prompt, embeds)
        return embeds, False

    def _drop(self, key: tuple[str, str]) -> None:
        if (old := self._entries.pop(key, None)) is not None:
            self._used -= old.nbytes
