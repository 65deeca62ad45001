"""Atomic, verified, safely loaded training checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(weights_only=True)``: no pickled code is executed,
which makes loading a file from someone else safe.

The contract of a checkpoint file:

* **Atomic.** It is written to ``.<name>.tmp-<pid>`` in the same folder, flushed to disk and
  renamed over the target in one ``os.replace``: a kill mid-write leaves the previous
  checkpoint intact. Temporary files left by a killed process are removed by the next save.
* **Verified.** Every top-level entry carries a SHA-256 of its content (tensor bytes, dtypes,
  shapes and every number and string), checked on load: torch's zip reader does not check
  its CRCs, so a flipped byte inside a tensor would otherwise load silently.
* **Refused clearly.** A missing, empty, truncated, foreign, tampered or incomplete file raises
  :class:`CheckpointError` naming the file and what is wrong (never a raw ``KeyError``).
* **Resumed only with the same settings** (:func:`require_same_settings`), except for the
  settings a caller explicitly allows to change.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import torch

FORMAT = "ganlib-checkpoint-v1"
_RESERVED = ("format", "checksum")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (corrupt, truncated, incomplete, from something else,
    or written with other settings)."""


# --- content checksum ----------------------------------------------------------------------------
def _feed(h, obj) -> None:
    """Hash ``obj`` deterministically: type tags, tensor dtype/shape/bytes, and exact reprs of leaves."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(obj, Mapping):
        h.update(b"D%d" % len(obj))
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(b"%s%d" % (type(obj).__name__.encode(), len(obj)))
        for item in obj:
            _feed(h, item)
    else:  # numbers, strings, None, bytes: repr round-trips exactly
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_checksums(state: Mapping) -> dict[str, str]:
    """SHA-256 of every top-level entry of ``state`` (a dict: the damaged entry can be named)."""
    out = {}
    for key, value in state.items():
        if key in _RESERVED:
            continue
        h = hashlib.sha256()
        _feed(h, value)
        out[key] = h.hexdigest()
    return out


# --- writing -------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # pragma: no cover - no cheap liveness test: keep it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists but belongs to someone else
        return True
    except (OverflowError, ValueError):  # not a possible pid: the file is stale
        return False
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>`` files next to ``path`` whose writing process no longer runs
    (left by a kill during a save); returns what was removed. Live writers' files are kept."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}.tmp-"
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.iterdir():
        if not tmp.name.startswith(prefix):
            continue
        pid = tmp.name[len(prefix):]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:  # pragma: no cover - removed concurrently
            pass
    return removed


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a broken file.

    The data goes to a temporary file in the same folder, is flushed to disk,
    and then replaces ``path`` in one ``os.replace``. A checksum of every top-level
    entry is stored with it (verified by :func:`load_checkpoint`); temporary files
    left behind by killed writers are removed first.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a dict of tensors, numbers, strings, lists and dicts, got "
                        f"{type(state).__name__}")
    path = Path(path)
    clash = [k for k in _RESERVED if k in state]
    if clash:
        raise ValueError(f"state may not use the reserved keys {clash}")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, "checksum": content_checksums(state), **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --- reading -------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike, map_location="cpu", required: Mapping | None = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Verifies the stored checksums and, if given, the ``required`` layout (see
    :func:`require_fields`). Raises :class:`CheckpointError` naming the file, what is wrong and
    what to do when the file is empty, truncated, corrupt, tampered, incomplete or not a ganlib
    checkpoint; ``FileNotFoundError`` when there is no file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    fresh = ("Delete or move it to start fresh, or point checkpoint_dir at another run.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it is probably truncated or corrupt "
                              f"(a disconnect during a copy?). {fresh}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        lines = str(err).strip().splitlines()
        detail = f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({detail}). It is probably truncated or corrupt (e.g. a "
            f"disconnect during a copy). {fresh}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a ganlib checkpoint (expected format {FORMAT!r}). Point checkpoint_dir at a "
            "folder written by ganlib.training.Trainer, or delete the file to start fresh."
        )
    stored = state.get("checksum")
    if stored is None:
        warnings.warn(f"{path} has no checksum (written by an older ganlib); its content is not verified",
                      stacklevel=2)
    else:
        actual = content_checksums(state)
        if not isinstance(stored, dict):
            raise CheckpointError(f"{path} has a malformed checksum entry; the file is corrupt. {fresh}")
        damaged = sorted(set(stored) ^ set(actual) | {k for k in stored if k in actual and stored[k] != actual[k]})
        if damaged:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: the content of {', '.join(map(repr, damaged))} does not match "
                f"the checksum written with it (a flipped byte on disk or a damaged copy). {fresh}")
    if required is not None:
        require_fields(path, state, required)
    return state


def require_fields(path, state: Mapping, layout: Mapping) -> None:
    """Refuse a checkpoint that lacks an entry of ``layout`` or holds one of the wrong type.

    ``layout`` maps each key to a type (or tuple of types) or to a nested layout (a dict).
    Every problem is listed in one :class:`CheckpointError` with dotted names (``rng.cuda``).
    """
    problems: list[str] = []

    def walk(obj, spec, prefix):
        for key, want in spec.items():
            name = f"{prefix}{key}"
            if not isinstance(obj, Mapping) or key not in obj:
                problems.append(f"{name!r} is missing")
                continue
            value = obj[key]
            if isinstance(want, Mapping):
                if not isinstance(value, Mapping):
                    problems.append(f"{name!r} should be a dict, is {type(value).__name__}")
                else:
                    walk(value, want, name + ".")
            elif not isinstance(value, want):
                expected = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
                problems.append(f"{name!r} should be {expected}, is {type(value).__name__}")

    walk(state, layout, "")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} is incomplete: {'; '.join(problems)}. It was not written by this trainer "
            "(or was edited); delete or move it to start fresh, or point checkpoint_dir at another run.")


def require_same_settings(path, saved_config: Mapping, config, keys: Iterable[str],
                          allow_changed: Iterable[str] = (), changeable: Iterable[str] = (),
                          defaults: Mapping | None = None, extra: Mapping[str, tuple] | None = None) -> list[str]:
    """Refuse to resume a run whose settings ``keys`` differ from the checkpoint's.

    Every differing setting is listed, with the checkpoint's value and this run's, in ONE
    :class:`CheckpointError` that says how to proceed: the result would be neither the old
    run nor a new one. Settings named in ``allow_changed`` may differ (the caller applies the
    new value); only names in ``changeable`` may be allowed. A key the checkpoint does not
    record counts as its entry in ``defaults`` (the value it had before the setting existed).
    ``extra`` maps further setting names to ``(saved, now)`` pairs (settings kept outside the
    config, e.g. a subclass's λ); they are listed in the same error. Returns the allowed
    settings that did change.
    """
    if not isinstance(saved_config, Mapping):
        raise CheckpointError(f"checkpoint {path} has no usable 'config' entry (got {type(saved_config).__name__})")
    keys, allow_changed, changeable = list(keys), set(allow_changed), set(changeable)
    bad = allow_changed - changeable
    if bad:
        raise ValueError(f"allow_changed may name only {sorted(changeable)}, got {sorted(bad)}")
    defaults = defaults or {}
    diffs, allowed = [], []
    for key in keys:
        saved = saved_config[key] if key in saved_config else defaults.get(key)
        now = getattr(config, key)
        if isinstance(saved, list) and isinstance(now, tuple):  # a tuple may come back as a list
            saved = tuple(saved)
        if saved == now:
            continue
        (allowed if key in allow_changed else diffs).append((key, saved, now))
    diffs += [(key, saved, now) for key, (saved, now) in (extra or {}).items() if saved != now]
    if diffs:
        lines = "\n".join(f"  {key}: checkpoint {saved!r}, this run {now!r}" for key, saved, now in diffs)
        may = [key for key, _, _ in diffs if key in changeable]
        how = "resume with the checkpoint's settings, or set checkpoint_dir to a new folder to start a new run"
        if may:
            how += (f"; to continue this run with the new {', '.join(may)}, pass "
                    f"allow_changed={tuple(may)!r} to fit() or load()")
        raise CheckpointError(f"{path} was written with other settings than this run's:\n{lines}\nTo proceed: {how}.")
    return [key for key, _, _ in allowed]
