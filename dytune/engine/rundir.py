"""Run folders that cannot be corrupted: one writer at a time, checkpoints written as one unit, and fresh runs that
never mix with the files of an earlier run.

The writing process (rank 0) of a training run uses them in this order::

    with RunLock(out):                                    # a second writer is refused, naming the first one
        clean_stale_temporaries(out)                      # leftovers of a killed write
        if resume:
            last = read_checkpoint(out / "last")          # verified; falls back to `last.prev` with a message
            ...                                           # load model and training state from `last`
        else:
            prepare_fresh_run(out, cfg.overwrite)         # refuses to mix with an earlier run, or clears it
        ...
        write_checkpoint(out, "last", save_files, epoch)  # save_files(tmp_folder) writes every file of the unit

A checkpoint is a folder holding its files and a `manifest.json` (epochs completed, size and SHA-256 of every file).
`write_checkpoint` writes all of it into a new temporary folder, fsyncs it and only then switches names: the current
checkpoint becomes `<name>.prev` and the new folder `<name>`. A kill at any point therefore leaves either the new
checkpoint or the previous complete one, and `read_checkpoint` tells which (tested by killing a writer at every
step).
"""
from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from ..utils.errors import RunError

try:
    import fcntl
except ImportError:  # Windows: the lock falls back to O_EXCL creation
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "write_checkpoint", "read_checkpoint", "verify_checkpoint", "checkpoint_epoch",
           "has_checkpoint", "clean_stale_temporaries", "prepare_fresh_run", "LOCK_NAME", "MANIFEST_NAME",
           "PREVIOUS_SUFFIX", "RUN_FILES"]

PathLike = Union[str, os.PathLike]
LOCK_NAME = ".dytune.lock"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "dytune-checkpoint"
PREVIOUS_SUFFIX = ".prev"
TMP_SUFFIX = ".tmp"  # temporaries are `.<name>.<random>.tmp`, the pattern of `dytune.core.checkpoint.atomic_write` too
# What a run writes into its folder; results.json first, so that a folder being cleared never looks finished.
RUN_FILES = ("results.json", "config.yaml", "log.csv", "last", "last" + PREVIOUS_SUFFIX, "best",
             "best" + PREVIOUS_SUFFIX, "tensorboard")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- one writer per run folder -------------------------------------------------------------------------------------
class RunLock:
    """Exclusive lock on a run folder, held from `__enter__` to `__exit__` (or `acquire` to `release`).

    The lock file `<folder>/.dytune.lock` names its holder (pid, host, start time, command). With `fcntl` (Linux,
    macOS) the kernel releases the lock when its holder dies, so the lock of a killed process is taken over, with a
    message naming it; a live holder makes `acquire` raise a `RunError` naming that process.

    Args:
        folder: The run folder; created if missing.
        log: Where the take-over message goes (default: stderr).
    """

    def __init__(self, folder: PathLike, log: Callable[[str], None] = _stderr) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.log = log
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise RunError(f"{self.path}: this RunLock is already held")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        try:
            previous = _read_owner(fd)
            if previous:
                self.log(f"{self.folder}: taking over the lock of {_describe_owner(previous)}, which is no longer "
                         "running")
            owner = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": " ".join(sys.argv)}
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(owner) + "\n").encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _open_locked(self) -> int:
        """A descriptor of the lock file, locked by this process."""
        if fcntl is None:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise RunError(self._busy_message(_read_owner_path(self.path)) + f" (if no such process is running, "
                               f"delete {self.path})") from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                busy = e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
                owner = _read_owner(fd) if busy else None
                os.close(fd)
                if not busy:
                    raise RunError(f"{self.path}: cannot lock the run folder ({e.strerror}); its file system may not "
                                   "support file locks") from None
                raise RunError(self._busy_message(owner)) from None
            try:  # the holder we waited for may have unlinked the file while we opened it: lock the current one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _busy_message(self, owner: Optional[Dict[str, Any]]) -> str:
        who = _describe_owner(owner) if owner else "another process"
        if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            who += " (this process)"
        return f"{self.folder} is in use by {who}; wait for it to end, or use another output_dir"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked, so that no one else's lock file is removed
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_owner(fd: int) -> Optional[Dict[str, Any]]:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return _parse_owner(b"".join(chunks))


def _read_owner_path(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return _parse_owner(path.read_bytes())
    except OSError:
        return None


def _parse_owner(data: bytes) -> Optional[Dict[str, Any]]:
    try:
        owner = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _describe_owner(owner: Dict[str, Any]) -> str:
    text = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}"
    return text + (f" ({owner['command']})" if owner.get("command") else "")


# ---- checkpoints as one unit ---------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hash_and_sync(path: Path) -> Dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        os.fsync(f.fileno())
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _unique_temp(parent: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=TMP_SUFFIX, dir=parent))


def _discard(path: Path) -> None:
    """Remove a folder by renaming it to a temporary name first: a kill never leaves half of it under its name."""
    if not path.exists():
        return
    trash = _unique_temp(path.parent, path.name)
    os.replace(path, trash / path.name)
    _fsync_dir(path.parent)
    shutil.rmtree(trash)


def write_checkpoint(parent: PathLike, name: str, write_files: Callable[[Path], None], epoch: int,
                     keep_previous: bool = True) -> Path:
    """Write checkpoint `<parent>/<name>` as one unit and return its path.

    Args:
        parent: The run folder.
        name: Checkpoint name, e.g. "last" or "best".
        write_files: Writes every file of the checkpoint into the folder it is given (a new, empty temporary
            folder; sub-folders are allowed).
        epoch: Epochs completed, recorded in the manifest (`checkpoint_epoch`).
        keep_previous: Keep the checkpoint this one replaces as `<name>.prev`, the fallback of `read_checkpoint`.
            Otherwise it is deleted once the new one is in place.
    """
    parent = Path(parent)
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise ValueError(f"checkpoint name {name!r}: expected a plain folder name such as 'last'")
    target, previous = parent / name, parent / (name + PREVIOUS_SUFFIX)
    if target.exists() and not target.is_dir():
        raise RunError(f"{target}: expected a checkpoint folder, found a file")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = _unique_temp(parent, name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes the folder private; give it the mode mkdir would
        write_files(tmp)
        files = {}
        for path in sorted(tmp.rglob("*")):
            rel = path.relative_to(tmp).as_posix()
            if path.is_file() and rel != MANIFEST_NAME:
                files[rel] = _hash_and_sync(path)
        if not files:
            raise RunError(f"{target}: the checkpoint writer wrote no files")
        manifest = {"format": MANIFEST_FORMAT, "version": 1, "epoch": int(epoch), "files": files,
                    "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        with (tmp / MANIFEST_NAME).open("w") as f:
            f.write(json.dumps(manifest, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for folder in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # switch: <name> -> <name>.prev, new -> <name>; in between, read_checkpoint falls back to <name>.prev
    if target.exists():
        _discard(previous)
        os.replace(target, previous)
        _fsync_dir(parent)
    os.replace(tmp, target)
    _fsync_dir(parent)
    if not keep_previous:
        _discard(previous)
    return target


def _manifest_problem(path: Path, legacy_ok: bool) -> Optional[str]:
    """Why checkpoint folder `path` cannot be used, or None when every file matches its manifest."""
    if not path.is_dir():
        return f"{path}: not found (a checkpoint write was interrupted, or nothing was saved yet)"
    manifest_file = path / MANIFEST_NAME
    if not manifest_file.is_file():
        if legacy_ok:
            return None
        return (f"{path}: no {MANIFEST_NAME}, so its files cannot be verified to come from one epoch (written by "
                "an older dytune, or by hand)")
    try:
        manifest = json.loads(manifest_file.read_text())
        files, epoch = manifest.get("files"), manifest.get("epoch")
    except (ValueError, AttributeError):  # not JSON, or not a mapping
        files = epoch = manifest = None
    if not (isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and isinstance(files, dict)
            and isinstance(epoch, int) and all(isinstance(v, dict) for v in files.values())):
        return f"{manifest_file}: not a dytune checkpoint manifest (truncated or edited?)"
    for rel, expected in sorted(files.items()):
        file = path / rel
        if not file.is_file():
            return f"{path}: {rel} is missing"
        if file.stat().st_size != expected.get("bytes"):
            return f"{path}: {rel} has {file.stat().st_size} bytes, the manifest says {expected.get('bytes')}"
        digest = hashlib.sha256()
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != expected.get("sha256"):
            return f"{path}: {rel} does not match its checksum in {MANIFEST_NAME}"
    return None


def verify_checkpoint(path: PathLike, legacy_ok: bool = False) -> Path:
    """Check every file of checkpoint folder `path` against its manifest; raise a `RunError` naming the problem.

    Args:
        path: The checkpoint folder.
        legacy_ok: Accept a folder without manifest (written before checkpoints had one) unverified.
    """
    path = Path(path)
    problem = _manifest_problem(path, legacy_ok)
    if problem:
        raise RunError(problem)
    return path


def read_checkpoint(path: PathLike, legacy_ok: bool = False, log: Callable[[str], None] = _stderr) -> Path:
    """The folder to load checkpoint `path` (e.g. `<run>/last`) from: `path` itself when it verifies, else the
    previous complete checkpoint `<path>.prev`, with a message through `log`.

    Args:
        path: The checkpoint folder.
        legacy_ok: Accept a folder without manifest (an older dytune's) unverified, with a message.
        log: Where the fall-back message goes (default: stderr); pass `lambda _: None` on non-writing ranks.

    Raises:
        FileNotFoundError: Neither `path` nor `<path>.prev` exists.
        RunError: Neither verifies; the message says why for both.
    """
    path = Path(path)
    previous = path.with_name(path.name + PREVIOUS_SUFFIX)
    if not path.exists() and not previous.exists():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    problem = _manifest_problem(path, legacy_ok)
    if problem is None:
        if legacy_ok and not (path / MANIFEST_NAME).is_file():
            log(f"{path}: no {MANIFEST_NAME} (written by an older dytune); loading it unverified")
        return path
    if not previous.exists():
        raise RunError(f"{problem}; there is no previous checkpoint ({previous.name}) to fall back to")
    fallback = _manifest_problem(previous, legacy_ok=False)
    if fallback is not None:
        raise RunError(f"{problem}; the previous checkpoint is not usable either: {fallback}")
    log(f"{problem}; using the previous complete checkpoint {previous} (epoch {checkpoint_epoch(previous)})")
    return previous


def checkpoint_epoch(path: PathLike) -> int:
    """Epochs completed when checkpoint folder `path` was written (from its manifest)."""
    manifest = Path(path) / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found; {path} is not a checkpoint written by write_checkpoint")
    return int(json.loads(manifest.read_text())["epoch"])


def has_checkpoint(folder: PathLike, name: str = "last") -> bool:
    """Whether run folder `folder` holds checkpoint `name` or its previous version (something to resume)."""
    folder = Path(folder)
    return (folder / name).is_dir() or (folder / (name + PREVIOUS_SUFFIX)).is_dir()


def clean_stale_temporaries(folder: PathLike) -> List[Path]:
    """Delete the temporary files and folders a killed write left in run folder `folder` and its sub-folders
    (`.<name>.<random>.tmp`); returns what was deleted. Call it while holding the folder's `RunLock`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    places = [folder, *(p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(TMP_SUFFIX))]
    removed = []
    for place in places:
        for path in place.glob(f".*{TMP_SUFFIX}"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def prepare_fresh_run(folder: PathLike, overwrite: bool) -> None:
    """Make sure a fresh run in `folder` cannot mix with an earlier run's files.

    A folder holding a run (any of `RUN_FILES`) is refused with a `RunError` that says to resume it or to set
    overwrite=true; with `overwrite`, those files are deleted (results.json first). Other files are left alone, so
    `output_dir=.` never empties the working directory. Call it while holding the folder's `RunLock`.
    """
    folder = Path(folder)
    found = [name for name in RUN_FILES if (folder / name).exists()]
    if not found:
        return
    if not overwrite:
        if has_checkpoint(folder):
            todo = "continue it with --resume, or start over with overwrite=true (which deletes them)"
        else:
            todo = ("it has no checkpoint to resume; start over with overwrite=true (which deletes them), or use "
                    "another output_dir")
        raise RunError(f"{folder} already holds a run ({', '.join(found)}); {todo}")
    for name in found:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            _discard(path)
        else:
            path.unlink()
    _fsync_dir(folder)
