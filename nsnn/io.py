"""Files that never tear: atomic writes (temp file + fsync + rename), JSON configs, CSV metrics, run dirs.

Every artefact nsnn writes (checkpoints, ``.npz`` weights, ``config.json``, ``metrics.csv`` rows,
figures) goes through these helpers, so a run killed at any instant leaves either the old file or the
new one, never half of one (plus, after a SIGKILL mid-write, a hidden ``.<name>.<random>.tmp`` that
:func:`remove_stale_temps` clears when the run is resumed or its folder reused)::

    atomic_save_torch({"model": net.state_dict()}, run_dir / "last.pt")
    state = load_torch(run_dir / "last.pt")            # weights_only=True
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import secrets
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

# failures of writing a file's bytes, which an OSError raised through a file object reports without its name
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})
_STALE_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what _atomic_target's temp names look like


def remove_stale_temps(folder: str | Path, *, target: str | None = None, min_age_s: float = 0.0) -> list[str]:
    """Delete the temp files a killed atomic write left in ``folder``; returns their names.

    With ``target``, only those of that file name; with ``min_age_s``, only those not modified for that
    many seconds (a temp still being written by another process is younger). Without ``min_age_s``,
    only for a folder no other process is writing to (a run being resumed or started afresh).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    stale = []
    for p in folder.iterdir():
        if not (_STALE_TEMP.match(p.name) and (target is None or p.name.startswith(f".{target}."))):
            continue
        try:
            if p.is_file() and now - p.stat().st_mtime >= min_age_s:
                p.unlink()
                stale.append(p.name)
        except FileNotFoundError:  # renamed or removed meanwhile by its writer
            continue
    return sorted(stale)


@contextmanager
def _atomic_target(path: str | Path, mode: str = "wb"):
    """Yield a temp file in ``path``'s folder; on success fsync it and rename it over ``path``.

    The temp file is created exclusively with mode 0666, so it gets the permissions an ordinary
    ``open`` would give (0666 minus the umask, applied by the kernel; the process's umask is never
    touched, other threads may be creating files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None and e.errno in _WRITE_ERRNOS:  # written through a file object (torch.save)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a binary temp file, then atomically move it to ``path``."""
    with _atomic_target(path, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with _atomic_target(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that never leaves a torn file behind; a failed write (a full disk) raises its
    ``OSError`` naming ``path``, not the ``RuntimeError`` torch's zip writer turns it into."""

    def save(f: IO[bytes]) -> None:
        try:
            torch.save(obj, f)
        except RuntimeError as e:
            cause = e.__context__
            if isinstance(cause, OSError) and cause.errno is not None:
                raise OSError(cause.errno, cause.strerror) from e
            raise

    return atomic_write(path, save)


def _failed_zip_member(path: Path) -> str | None:
    """The first member of zip file ``path`` whose CRC-32 does not match its bytes (torch.load does not
    check them, so a flipped bit in a tensor would load silently), else None (also for a non-zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError):
        return None  # not a readable zip: torch.load says what it is


class TorchFileError(ValueError):
    """A file :func:`load_torch` cannot load weights-only; ``reason`` says why, in a few words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is not a torch file of tensors and plain data ({reason})")
        self.path, self.reason = path, reason


def load_torch(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """Load a file written by :func:`atomic_save_torch` with ``weights_only=True``.

    Raises ``FileNotFoundError`` naming the path, or :class:`TorchFileError` (a ``ValueError``) naming
    it if it is not a torch file of tensors and plain data: another file type, truncated, corrupt, or
    holding other objects (the first one is named). Torch's advice to retry with
    ``weights_only=False``, which would run code from a file of unknown origin, is never relayed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    damaged = _failed_zip_member(path)
    if damaged is not None:
        raise TorchFileError(path, f"corrupt: {damaged} fails its CRC-32 check")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        # a real global is module.name; bytes that merely start with pickle's GLOBAL opcode ("c") give
        # torch a name like "orrup." (the file b"corrupt"), which is no reason to report
        found = re.search(r"Unsupported global: GLOBAL ([\w.]*\w\.\w+)", str(e))
        reason = (
            f"it holds an object of type {found.group(1)}"
            if found
            else "wrong file type, truncated or corrupt"
        )
        raise TorchFileError(path, reason) from None


def atomic_savez(path: str | Path, *, compress: bool = True, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` (``np.savez`` with ``compress=False``: faster) written atomically."""
    save = np.savez_compressed if compress else np.savez
    return atomic_write(path, lambda f: save(f, **arrays))


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (as :func:`atomic_savez` writes). Raises ``FileNotFoundError``
    naming the path, or ``ValueError`` naming it if it is another file type, truncated, corrupt (a
    member failing its CRC-32) or holds object arrays, which are never unpickled (that would run code
    from the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        text = str(e)  # numpy's words on pickles advise allow_pickle=True: never relayed
        if text.startswith("Object arrays"):
            reason = "it holds object arrays, which are never unpickled"
        elif "pickle" in text:
            reason = "another file type"
        else:
            reason = f"truncated or corrupt: {text}"
        raise ValueError(f"{path} is not a readable .npz file of arrays ({reason})") from None


def _jsonable(obj: Any) -> Any:
    """``obj`` with Paths, numpy values, arrays and tensors converted and every non-finite float
    (NaN, ±inf, which strict JSON has no words for) replaced by None."""
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray | torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str | int):
        return obj
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def json_text(data: Any, *, indent: int | None = None) -> str:
    """Strict JSON for ``data`` (keys sorted; NaN and ±inf written as ``null``, so any JSON parser reads
    it; Paths, numpy values and tensors converted)::

        json_text({"loss": float("nan"), "acc": np.float32(0.5)})  # '{"acc": 0.5, "loss": null}'
    """
    return json.dumps(_jsonable(data), indent=indent, sort_keys=True, allow_nan=False)


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented strict JSON (:func:`json_text`), atomically."""
    return atomic_write_text(path, json_text(data, indent=2) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


class CsvLog:
    """Append-only CSV with a fixed header; each row is flushed and fsynced as it is written. An
    existing file is appended to if its header is the same; one whose columns are all among ``fields``
    (written by an earlier version with fewer columns) is first rewritten with the full header, its rows
    left empty in the new columns; any other raises ``ValueError`` (rows would land under the wrong
    columns). A last row cut short by a kill mid-append is dropped when the file is opened again.

    >>> log = CsvLog(run_dir / "metrics.csv", ["epoch", "loss"])
    >>> log.append({"epoch": 1, "loss": 0.5})
    """

    def __init__(self, path: str | Path, fields: Iterable[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._rewrite([])
            return
        with open(self.path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != self.fields and not (header and set(header) < set(self.fields)):
            raise ValueError(
                f"{self.path} has the columns {header}, not {self.fields} (written by another version or "
                "tool); move it away or write to another folder"
            )
        rows, torn = _complete_rows(self.path)
        if torn or header != self.fields:
            self._rewrite(rows)

    def append(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.fields)
        if unknown:
            raise ValueError(f"unknown CSV columns {sorted(unknown)}; expected a subset of {self.fields}")
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(dict(row))
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, key: str, last: float) -> None:
        """Drop rows whose ``key`` exceeds ``last`` (used on resume so no row appears twice)."""
        self.keep(lambda row: float(row[key]) <= last)

    def keep(self, wanted: Callable[[dict[str, str]], bool]) -> None:
        """Keep only the rows (as read back: strings) for which ``wanted(row)`` is true, in their order."""
        self._rewrite([r for r in read_csv(self.path) if wanted(r)])

    def _rewrite(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the file atomically by this log's header and ``rows`` (missing columns left empty)."""
        with _atomic_target(self.path, "w") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(rows)


def _complete_rows(path: Path) -> tuple[list[dict[str, str]], bool]:
    """The rows of CSV file ``path`` and whether its last one was torn (cut short by a kill while it
    was appended: no final newline, or fewer fields than the header), which is left out."""
    rows = read_csv(path)
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        ends_whole = f.read(1) == b"\n"
    torn = bool(rows) and (not ends_whole or None in rows[-1].values())
    return (rows[:-1] if torn else rows), torn


def read_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path} is not a readable CSV file: {e}") from e


def check_new_run_dir(out: str | Path) -> Path:
    """``out`` as a Path if a new run may be written there: missing, or an empty folder (temp files
    of a killed atomic write do not count).

    Raises ``FileExistsError`` naming what is there, so that a new run never overwrites an old one.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"run folder {path} (--out) is a file, not a folder")
    if path.is_dir():
        held = sorted(p.name for p in path.iterdir() if not _STALE_TEMP.match(p.name))
        if held:
            listed = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
            raise FileExistsError(
                f"run folder {path} (--out) already holds files ({listed}); choose a new folder"
            )
    return path


_HELD_RUN_DIRS: dict[Path, int] = {}  # resolved run folder -> the open descriptor holding its lock


def hold_run_dir(path: str | Path, busy: str | None = None) -> bool:
    """Take an exclusive advisory lock (``flock``) on run folder ``path`` until :func:`release_run_dir`
    or the end of this process, so that two processes never write one run: two runs started at the
    same instant with the same ``--out``, or a ``--resume`` of a run still training. The lock goes with
    the process, also when it is killed, so a folder left behind stays usable. Returns False if this
    process already holds it (e.g. a notebook retrying a run before it was released), True once taken. Raises
    ``FileExistsError`` (``busy``, else a message for ``--out``) if another process holds it. Where
    ``flock`` is missing (Windows) nothing is locked (True)."""
    try:
        import fcntl
    except ImportError:
        return True
    path = Path(path)
    key = path.resolve()
    if key in _HELD_RUN_DIRS:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FileExistsError(
            busy or f"--out {path} is being written by another run; choose a new folder"
        ) from None
    _HELD_RUN_DIRS[key] = fd
    return True


def release_run_dir(path: str | Path) -> None:
    """Give back this process's lock on run folder ``path`` (see :func:`hold_run_dir`), once the run is
    complete; nothing happens if this process does not hold it."""
    fd = _HELD_RUN_DIRS.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)


def make_run_dir(out: str | Path | None, prefix: str, root: str | Path = "runs") -> Path:
    """Create a run directory: ``out`` if given (it must be missing or empty, see
    :func:`check_new_run_dir`, and not taken by a run started at the same instant), else
    ``root/<prefix>-<YYYYmmdd-HHMMSS>`` (suffixed if taken).
    """
    if out is not None:
        path = check_new_run_dir(out)
        path.mkdir(parents=True, exist_ok=True)
        if hold_run_dir(path):
            check_new_run_dir(path)  # again, now that no other process can take it
            remove_stale_temps(path)
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    Path(root).mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = Path(root) / (f"{prefix}-{stamp}" if n == 1 else f"{prefix}-{stamp}-{n}")
        try:
            path.mkdir()  # atomic: two runs started in the same second get two folders
        except FileExistsError:
            n += 1
            continue
        hold_run_dir(path)  # a --resume of this run while it trains is refused
        return path
