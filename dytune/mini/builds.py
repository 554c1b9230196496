"""Shared by the offline data builders (mini-VTAB, mini-video, mini-segmentation): a build goes to a temporary
folder `.<name>.tmp-<pid>` next to its destination and is renamed into place, so a folder is complete or absent."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Optional

__all__ = ["remove_stale_builds", "check_built", "build_atomically"]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a folder of our own pid is from an earlier call that was interrupted
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_builds(root: Path, name: str) -> None:
    """Delete the temporary folders of `name` under `root` left by builders that died (their process is gone)."""
    for tmp in root.glob(f".{name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def check_built(folder: Path, settings: Dict[str, Any], kind: str) -> None:
    """Refuse a finished folder whose `meta.json` was built with other settings (or that is not a build at all).

    Args:
        folder: The existing folder.
        settings: The settings the caller would build with; each must equal the one in `meta.json`.
        kind: What the folder should be, for the message (e.g. "mini-VTAB task folder").
    """
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise ValueError(f"{folder} exists but has no meta.json: not a {kind}; move it away")
    meta = json.loads(meta_path.read_text())
    found = {k: meta.get(k) for k in settings}
    if found != settings:
        raise ValueError(f"{folder} was built with {found}, not the requested {settings}; "
                         f"use another --root or delete the folder")


def build_atomically(dest: Path, fill: Callable[[Path], None], settings: Optional[Dict[str, Any]] = None,
                     kind: str = "build") -> Path:
    """Build the folder `dest` by fill(tmp) in the temporary folder `.<name>.tmp-<pid>` beside it, then rename it
    into place, so `dest` is complete or absent; the temporary folder is removed when fill fails.

    Args:
        dest: The folder to build (absent).
        fill: Writes the whole content into the (empty, existing) folder it is given.
        settings: Where another process finished `dest` first, its folder is kept if its `meta.json` has these
            settings (`check_built`); None keeps it as it is.
        kind: What the folder is, for `check_built`'s message.

    Returns:
        `dest`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(dest.parent, dest.name)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: keep its folder
            if settings is not None:
                check_built(dest, settings, kind)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
