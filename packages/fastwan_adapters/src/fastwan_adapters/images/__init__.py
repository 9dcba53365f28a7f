"""The first frame of an image-to-video job: fetched or decoded, checked, upright, RGB.

- :class:`HttpImageLoader` implements ``fastwan_core.ports.ImageLoader``.
- :class:`ImageLoaderSettings` holds its limits (``ImageLoaderSettings.from_env`` reads
  ``ALLOW_PRIVATE_IMAGE_URLS``).
- :class:`GuardedBackend` is the network layer that refuses private addresses; tests build
  one with a fixed resolver.
"""

from __future__ import annotations

from fastwan_adapters.images.loader import HttpImageLoader, ImageLoaderSettings
from fastwan_adapters.images.network import GuardedBackend

__all__ = ["GuardedBackend", "HttpImageLoader", "ImageLoaderSettings"]
