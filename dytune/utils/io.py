"""Writing files so that a reader, or a process killed mid-write, never sees half of one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

__all__ = ["atomic_write", "read_json"]


def atomic_write(path: Union[str, os.PathLike], write: Callable[[str], None]) -> None:
    """Call write(tmp) on a temporary file next to `path`, then move it into place, so readers never see half a file.

    Args:
        path: The file to write.
        write: Writes the whole content to the temporary path it is given.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600); give it the mode open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(file: Path, expected: str) -> Any:
    """The JSON document in `file`, which one of dytune's writers made.

    Args:
        file: The file to read.
        expected: What should be there, for the error of a missing file (e.g. "a checkpoint folder written by
            dytune train").

    Raises:
        FileNotFoundError: `file` does not exist.
        ValueError: `file` is not valid JSON.
    """
    if not file.is_file():
        raise FileNotFoundError(f"{file}: not found; expected {expected}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from e
