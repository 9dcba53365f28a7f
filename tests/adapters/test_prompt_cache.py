"""The prompt cache: hits, misses, LRU eviction by size, off at 0, exact tensors, thread safety."""

from __future__ import annotations

import threading

import pytest
import torch

from fastwan_adapters.generator.prompt_cache import PromptCache

_MIB = 1 << 20


def embeds(seed: int, tokens: int = 512, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Embeddings shaped as Wan's (1, tokens, 4096): 4 MiB in bf16 at 512 tokens."""
    return torch.randn(1, tokens, 4096, generator=torch.Generator().manual_seed(seed)).to(dtype)


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit (NaN-safe), in dtype, shape and device."""
    same_kind = a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    return same_kind and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def test_a_miss_encodes_and_a_hit_returns_the_identical_tensor_without_encoding() -> None:
    cache = PromptCache(16 * _MIB)
    calls: list[str] = []

    def encode() -> torch.Tensor:
        calls.append("encoded")
        return embeds(1)

    first, first_hit = cache.lookup_or_encode("model", "a cat", encode)
    second, second_hit = cache.lookup_or_encode("model", "a cat", encode)

    assert (first_hit, second_hit) == (False, True)
    assert calls == ["encoded"]
    assert identical(second, first)
    assert second.data_ptr() != first.data_ptr()  # a copy: the caller may change it freely
    second.add_(1)
    assert identical(cache.get("model", "a cat"), first)  # type: ignore[arg-type]


def test_a_hit_is_returned_on_the_requested_device_and_dtype() -> None:
    cache = PromptCache(16 * _MIB)
    cache.put("model", "a cat", embeds(1))

    as_float = cache.get("model", "a cat", device="cpu", dtype=torch.float32)

    assert as_float is not None
    assert as_float.dtype == torch.float32
    assert torch.equal(as_float, embeds(1).float())


def test_entries_are_kept_on_the_cpu_as_copies() -> None:
    cache = PromptCache(16 * _MIB)
    original = embeds(1)
    cache.put("model", "a cat", original)
    original.zero_()  # the caller reusing its buffer must not change the cache

    assert identical(cache.get("model", "a cat"), embeds(1))  # type: ignore[arg-type]
    assert cache.nbytes == 4 * _MIB


def test_an_unknown_prompt_is_a_miss() -> None:
    cache = PromptCache(16 * _MIB)
    cache.put("model", "a cat", embeds(1))

    assert cache.get("model", "a dog") is None


def test_entries_are_keyed_by_model_too() -> None:
    cache = PromptCache(16 * _MIB)
    cache.put("model-a", "a cat", embeds(1))
    cache.put("model-b", "a cat", embeds(2))

    assert identical(cache.get("model-a", "a cat"), embeds(1))  # type: ignore[arg-type]
    assert identical(cache.get("model-b", "a cat"), embeds(2))  # type: ignore[arg-type]
    assert cache.get("model-c", "a cat") is None


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    cache = PromptCache(12 * _MIB)  # room for three 4 MiB entries
    for seed, prompt in enumerate(["one", "two", "three"]):
        cache.put("model", prompt, embeds(seed))
    assert cache.get("model", "one") is not None  # "one" is now the most recently used

    cache.put("model", "four", embeds(4))

    assert cache.get("model", "two") is None
    kept = ["one", "three", "four"]
    assert [prompt for prompt in kept if cache.get("model", prompt) is not None] == kept
    assert len(cache) == 3
    assert cache.nbytes == 12 * _MIB


def test_eviction_frees_as_many_entries_as_the_new_one_needs() -> None:
    cache = PromptCache(12 * _MIB)
    for seed, prompt in enumerate(["one", "two", "three"]):
        cache.put("model", prompt, embeds(seed, tokens=256))  # 2 MiB each

    cache.put("model", "big", embeds(9, tokens=1280))  # 10 MiB: only one 2 MiB entry may stay

    assert [p for p in ["one", "two", "three"] if cache.get("model", p) is not None] == ["three"]
    assert cache.nbytes == 12 * _MIB


def test_replacing_an_entry_counts_its_size_once() -> None:
    cache = PromptCache(8 * _MIB)
    cache.put("model", "a cat", embeds(1))
    cache.put("model", "a cat", embeds(2))

    assert len(cache) == 1
    assert cache.nbytes == 4 * _MIB
    assert identical(cache.get("model", "a cat"), embeds(2))  # type: ignore[arg-type]


def test_an_entry_larger_than_the_bound_is_not_stored_and_evicts_nothing() -> None:
    cache = PromptCache(6 * _MIB)
    cache.put("model", "small", embeds(1, tokens=256))

    embedding, hit = cache.lookup_or_encode("model", "huge", lambda: embeds(2, tokens=2048))  # 16 MiB

    assert not hit
    assert identical(embedding, embeds(2, tokens=2048))
    assert cache.get("model", "huge") is None
    assert cache.get("model", "small") is not None


def test_zero_bytes_disables_the_cache() -> None:
    cache = PromptCache(0)
    calls: list[int] = []

    for _ in range(2):
        _, hit = cache.lookup_or_encode("model", "a cat", lambda: calls.append(1) or embeds(1))
        assert not hit

    assert calls == [1, 1]
    assert len(cache) == 0
    assert cache.get("model", "a cat") is None


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        PromptCache(-1)


def test_concurrent_use_keeps_the_size_accounting_exact() -> None:
    cache = PromptCache(8 * _MIB)
    small = embeds(1, tokens=64)  # 0.5 MiB

    def worker(offset: int) -> None:
        for i in range(200):
            prompt = f"p{(offset + i) % 40}"
            cache.lookup_or_encode("model", prompt, lambda: small)

    threads = [threading.Thread(target=worker, args=(n * 7,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(cache) == 16
    assert cache.nbytes == 16 * small.numel() * small.element_size()
