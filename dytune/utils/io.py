"""Writing files so that a reader, or a process killed mid-write, never sees half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["atomic_write"]


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
