"""Open an input file safely: only a regular, non-empty file, never blocking. Torch-free."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Union

from ..errors import ImageError

NOT_FOUND = "not found: no such file, folder, or file matching the pattern"
EMPTY_FILE = "empty file (0 bytes)"

_FILE_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device",
               stat.S_IFDIR: "a folder from which no image file was taken (none in it, it cannot be listed, or they "
                             "are in sub-folders: add -r)"}


def open_regular_fd(path: Union[str, Path]) -> tuple[int, int]:
    """(file descriptor, size) of the file opened for reading, only when it is a regular, non-empty
    file. Opened without blocking, so a FIFO named like an image is refused instead of waiting
    forever for a writer. Raises ImageError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError(NOT_FOUND) from None
    except PermissionError:
        raise ImageError("cannot read the file: permission denied") from None
    except OSError as exc:  # a symlink loop, a name too long, a vanished mount...
        raise ImageError(f"cannot open the file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        kind = stat.S_IFMT(st.st_mode)
        if kind != stat.S_IFREG:
            raise ImageError(f"not a regular file: {_FILE_KINDS.get(kind, 'a special file')}")
        if st.st_size == 0:
            raise ImageError(EMPTY_FILE)
        return fd, st.st_size  # O_NONBLOCK does nothing to reads of a regular file
    except BaseException:
        os.close(fd)
        raise


def open_regular_file(path: Union[str, Path]) -> BinaryIO:
    """The file opened for reading (a regular, non-empty file), as a binary file object."""
    fd, _ = open_regular_fd(path)
    try:
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
