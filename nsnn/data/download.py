"""Verified downloads and safe archive extraction.

A download streams into a temp file beside the target while hashing, and is renamed over the target only
when its md5 matches, so an interrupted or corrupted transfer never leaves a file that looks valid::

    download_file(["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"], "data/cifar-10-python.tar.gz",
                  md5="c58f30108f718f92721af3b95e74349a")
    extract_tar("data/cifar-10-python.tar.gz", "data", top="cifar-10-batches-py")

Any ``urllib`` URL works, ``file://`` included (tests and offline mirrors use it).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from nsnn.data.base import DatasetError, progress_off
from nsnn.io import atomic_write, remove_stale_temps

_CHUNK = 1 << 20
# A download's temp file untouched for this long was left by a killed process (a live transfer writes
# every few seconds; urllib gives up on a silent connection after ``timeout``).
_STALE_DOWNLOAD_S = 3600.0


class _ChecksumMismatch(Exception):
    pass


def md5_file(path: str | Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stream(url: str, out: IO[bytes], md5: str, timeout: float, progress: bool | None) -> None:
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            desc=url.rsplit("/", 1)[-1],
            disable=progress_off(progress),
        ) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
    if digest.hexdigest() != md5:
        raise _ChecksumMismatch(f"md5 {digest.hexdigest()} != expected {md5}")


def download_file(
    urls: str | Sequence[str],
    dest: str | Path,
    md5: str,
    *,
    timeout: float = 60.0,
    progress: bool | None = None,
    layout: str | None = None,
) -> Path:
    """Fetch ``dest`` from the first of ``urls`` that delivers a file with the given md5.

    An existing ``dest`` with the right md5 is kept without any network access. Each attempt streams to
    a temp file in ``dest``'s folder, checks the md5, then renames atomically; a failed attempt (network
    error, HTTP error, broken HTTP response, malformed URL, checksum mismatch) leaves nothing behind and
    the next mirror is tried. If all fail, raises :class:`DatasetError` listing every URL with its error,
    and the folders made for ``dest`` are removed again if still empty.
    ``md5`` is 32 hex digits, either case. The temp file of a download killed outright (SIGTERM, SIGKILL)
    is removed by the next call for the same ``dest`` once it has been untouched for an hour.
    ``layout``: the local layout that makes the download unnecessary (a dataset's extracted files),
    quoted in that error so an offline user knows what to copy where.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError("download_file needs at least one URL")
    if not (isinstance(md5, str) and re.fullmatch(r"[0-9a-fA-F]{32}", md5)):
        raise ValueError(f"md5 must be 32 hexadecimal digits; got {md5!r}")
    md5 = md5.lower()
    dest = Path(dest)
    found = md5_file(dest) if dest.is_file() else None
    if found == md5:
        return dest
    # what an earlier download killed by SIGTERM/SIGKILL left (Ctrl-C cleans up after itself)
    remove_stale_temps(dest.parent, target=dest.name, min_age_s=max(_STALE_DOWNLOAD_S, 10 * timeout))
    created = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # deepest first
    errors = []
    for url in urls:
        try:
            atomic_write(dest, lambda f, url=url: _stream(url, f, md5, timeout, progress))
            return dest
        except (OSError, http.client.HTTPException, ValueError, _ChecksumMismatch) as e:
            errors.append(f"  {url}: {type(e).__name__}: {e}")
    for folder in created:  # the folders made for the file, left empty: gone again
        try:
            folder.rmdir()
        except OSError:
            break
    offline = f"If this machine is offline, fetch {dest.name} elsewhere and copy it to {dest}"
    if found is not None:
        offline = (
            f"The {dest.name} already there has md5 {found}, not {md5} (truncated, or another version): "
            f"replace it with a good copy (or delete it).\n{offline}"
        )
    if layout is None:
        offline += " (or place the extracted dataset in the data folder), then run again."
    else:
        offline += f", or lay out the extracted dataset instead:\n{layout}\nthen run again."
    raise DatasetError(
        f"could not download {dest.name} (md5 {md5}) to {dest}:\n" + "\n".join(errors) + "\n" + offline
    )


def _safe_members(tar: tarfile.TarFile, top: str, archive: Path) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        parts = PurePosixPath(m.name).parts
        if (
            not parts
            or PurePosixPath(m.name).is_absolute()
            or ".." in parts
            or parts[0] != top
            or not (m.isfile() or m.isdir())
        ):
            raise DatasetError(
                f"refusing to extract {archive}: member {m.name!r} is not a plain file or folder under {top}/"
            )
        members.append(m)
    return members


def extract_tar(archive: str | Path, dest: str | Path, top: str) -> Path:
    """Extract ``archive`` into ``dest`` and return ``dest / top``.

    Safe extraction: every member must be a regular file or folder under ``top/`` (no absolute paths,
    ``..``, links or devices), and the archive is unpacked into a temp folder first and moved into
    place in one rename, so a crash never leaves a half-extracted ``dest / top``.
    """
    archive, dest = Path(archive), Path(dest)
    target = dest / top
    if target.exists():
        raise DatasetError(
            f"{target} already exists but is incomplete or corrupt; delete it and run again with --download"
        )
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{top}.", suffix=".extract", dir=dest))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(tar, top, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)
        os.replace(tmp / top, target)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"cannot extract {archive} (corrupt archive?): {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
