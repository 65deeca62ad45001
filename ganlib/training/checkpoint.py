"""Atomic, safely loaded training checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(weights_only=True)``: no pickled code is executed,
which makes loading a file from someone else safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = "ganlib-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (corrupt, truncated, or from something else)."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a broken file.

    The data goes to a temporary file in the same folder, is flushed to disk,
    and then replaces ``path`` in one ``os.replace``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`CheckpointError` with what to do when the file is corrupt,
    truncated or not a ganlib checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "It is probably truncated or corrupt (e.g. a disconnect during a copy). Delete or move it to "
            "start fresh, or point checkpoint_dir at another run."
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a ganlib checkpoint (expected format {FORMAT!r}). Point checkpoint_dir at a "
            "folder written by ganlib.training.Trainer, or delete the file to start fresh."
        )
    return state


def require_same_settings(path, saved_config: dict, config, keys) -> None:
    """Refuse to resume a run whose ``keys`` differ from the checkpoint's: the result would be
    neither the old run nor a new one."""
    for key in keys:
        if saved_config.get(key) != getattr(config, key):
            raise CheckpointError(
                f"{path} was written with {key}={saved_config.get(key)!r} but this run has "
                f"{key}={getattr(config, key)!r}; resume with the same settings or use another checkpoint_dir."
            )
