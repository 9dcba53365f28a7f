"""A random-weight checkpoint's folder: written once, aside and then renamed, marked complete, reused.

The tiny model's folder (``FASTWAN_TINY_DIR``) and the full-size one the GPU bench writes
(``bench/full_size_model.py --out``) are both kept here: a complete build is marked by
``MARKER`` (its version, seed, gates and size), a folder holding something else is never
touched, an outdated build of ours is replaced, and concurrent builders each build aside
with the first rename winning.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator.random_model import TINY_SIZE, ModelSize, random_model

if TYPE_CHECKING:
    import torch

__all__ = ["MARKER", "ensure_model", "is_complete", "write_model"]

log = logging.getLogger(__name__)

#: A complete build's mark (the name the tiny model's folders have always had).
MARKER: Final = "fastwan-tiny.json"
_BUILD_VERSION: Final = 2


def ensure_model(
    folder: Path, size: ModelSize, *, seed: int, sparse: bool, owner: str, device: torch.device | None = None
) -> Path:
    """The checkpoint of ``size`` (with gates if ``sparse``) in ``folder``, written there first if it is
    not already (made on ``device``; see :func:`random_model`).

    Raises:
        ConfigError: ``folder`` is not empty and holds no build of ours (``owner`` names the
            setting or option that chose it); an outdated build of ours is replaced.
    """
    if is_complete(folder, size, sparse):
        return folder
    _clear_outdated(folder, size, sparse, owner)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write_model(staging, size, seed=seed, sparse=sparse, device=device)
        try:
            staging.rename(folder)
        except OSError:
            if not is_complete(folder, size, sparse):  # not another builder's finished copy
                raise
            log.info("%s model: another process built %s first; using it", size.name, folder)
        else:
            log.info("%s model: built in %s", size.name, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_model(
    folder: Path, size: ModelSize, *, seed: int, sparse: bool, device: torch.device | None = None
) -> None:
    """Write the random-weight checkpoint of ``size`` to ``folder``, marked complete last."""
    started = time.perf_counter()
    model = random_model(size, seed=seed, sparse=sparse, device=device)
    made = time.perf_counter()
    model.save(folder, size)
    log.info(
        "%s model: made in %.1f s, saved in %.1f s", size.name, made - started, time.perf_counter() - made
    )
    marker: dict[str, Any] = {"version": _BUILD_VERSION, "seed": seed, "sparse": sparse}
    if size != TINY_SIZE:  # the tiny model's mark stays as it always was
        marker["size"] = size.name
    (folder / MARKER).write_text(json.dumps(marker))


def _clear_outdated(folder: Path, size: ModelSize, sparse: bool, owner: str) -> None:
    """Remove an older build of ours; refuse to touch a folder that is not ours."""
    if not folder.is_dir() or not any(folder.iterdir()) or is_complete(folder, size, sparse):
        return  # nothing there, or another process has just finished a current build
    if not (folder / MARKER).is_file():
        raise ConfigError(
            f"{owner}: {folder} is not empty and holds no {size.name} model built by this worker; "
            "remove it or choose another folder"
        )
    log.info("%s model: replacing the outdated build in %s", size.name, folder)
    shutil.rmtree(folder)


def is_complete(folder: Path, size: ModelSize, sparse: bool) -> bool:
    """Whether ``folder`` holds a finished, current build of ``size`` (with gates if ``sparse``)."""
    try:
        built = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        built.get("version") == _BUILD_VERSION
        and built.get("sparse", False) == sparse
        and built.get("size", TINY_SIZE.name) == size.name
    )
