"""Files in and out: open an input only when it is a regular, non-empty file (never blocking),
write outputs atomically after checking their path (never renaming over a device, a FIFO or a link
to one: those are written through), hold an output for one writer at a time, and send what native
code writes to stderr into a file. Torch-free."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

from .constants import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS
from .errors import ConfigError, ImageError, OutputPathError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; OutputLock then records its holder only
    fcntl = None

_FILE_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device",
               stat.S_IFDIR: "a folder from which no image file was taken (none in it, it cannot be listed, or they "
                             "are in sub-folders: add -r)"}


def special_kind(path: Union[str, Path]) -> str | None:
    """What `path` is, following symbolic links, when it exists and is neither a regular file nor a
    folder ('a character device', 'a FIFO (named pipe)'...); None otherwise. Such an output is written
    through, as a stream: renaming a file over it would replace /dev/null or the user's pipe."""
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
    except OSError:  # missing, or a dangling link: a new regular file will be made
        return None
    if kind in (stat.S_IFREG, stat.S_IFDIR):
        return None
    return _FILE_KINDS.get(kind, "a special file")


def write_through(path: Union[str, Path], data: bytes) -> None:
    """Write `data` into an existing special file (a device, a FIFO: this waits for its reader), as
    `cat > path` would: no temporary file, no rename, nothing created or replaced."""
    if special_kind(path) == _FILE_KINDS[stat.S_IFSOCK]:
        raise OutputPathError(f"{path} is a socket; cnn-edge writes files, devices and FIFOs: choose another output")
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a single call may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass(frozen=True)
class ReadLimits:
    """The most one input image may be: its file's size, checked before any byte is read, and its
    pixels, checked from its header before it is decoded (--max-file-bytes, --max-pixels)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self) -> None:
        for flag, value in (("--max-pixels", self.max_pixels), ("--max-file-bytes", self.max_file_bytes)):
            if value < 1:
                raise ConfigError(f"{flag} must be positive, got {value}")


def check_writable(path: Path) -> Path:
    """Fail early, before any work, when `path` cannot be written; returns it as a Path. A device or a
    FIFO (or a link to one) needs only to be writable itself: it is written through, never replaced."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputPathError(f"output path {path} is a folder; give a file name")
    if special_kind(path) is not None:
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{path} ({special_kind(path)}) is not writable: choose another output path")
        return path
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"cannot create folder {parent} for {path}: {exc.strerror}") from None
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise OutputPathError(f"cannot write to {parent} (for {path}): choose a writable output path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{path} exists and is read-only: choose another output path")
    return path


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except (OSError, ValueError):
        return None


def refuse_overwriting(output: Path, protected, option: str = "-o") -> None:
    """ConfigError, before any work, when `output` is one of the files the command reads: the same
    absolute path, the same path once the output's symbolic links are resolved (an output that links
    to an input), or the same file (device and inode: a hard link, or an input that links to the
    output). A device such as /dev/null is never "overwritten": it is written through."""
    if special_kind(output) is not None:
        return  # written through: no file is replaced
    targets = {os.path.abspath(output), os.path.realpath(output)}
    identity = _identity(output)
    for p in protected:
        if p is None:
            continue
        if os.path.abspath(p) in targets or (identity is not None and _identity(p) == identity):
            raise ConfigError(f"{option} {output} would overwrite {p}, which this command reads; choose another output file")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file. A device or a
    FIFO at `path` (or a link to one) is written through instead: never replaced by a regular file."""
    path = Path(path)
    if special_kind(path) is not None:
        write_through(path, data)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        # mkstemp makes 0600 files; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def lock_path(output: Union[str, Path]) -> Path:
    """The lock file of an output: `results.csv` -> `results.csv.lock` (beside a folder of part files:
    `out/` -> `out.lock`)."""
    output = Path(os.path.abspath(output))
    return output.with_name(output.name + ".lock")


class OutputLock:
    """One writer per output: an advisory lock (flock) on `<output>.lock`, held for the whole run and
    released (the file removed) by release(). The file records who holds it (pid, host, start time),
    so a second run can say whom it waits for. A lock file left by a killed run holds no lock: the
    next run takes it over. Raises OutputPathError (exit 2) when another process holds the lock."""

    def __init__(self, output: Union[str, Path], option: str = "-o"):
        self.path = lock_path(output)
        self._fd: int | None = None
        for _ in range(5):  # the holder may remove the file between our open and our lock: open it again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputPathError(f"{output} is being written by {holder}; wait for it or choose another "
                                      f"{option} (the lock is {self.path})") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                break
            os.close(fd)
        else:
            raise OutputPathError(f"{self.path} keeps changing: is another run starting on {output}?")
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (a run waiting on the old file sees it gone)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> str:
    """'cnn-edge pid 1234 on host X since 2026-12-01 05:40:00', from a lock file's record."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"cnn-edge pid {int(record['pid'])} on host {record['host']} since {record['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another cnn-edge run (it is starting)"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


NOT_FOUND = "not found: no such file, folder, or file matching the pattern"
EMPTY_FILE = "empty file (0 bytes)"


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


CAPTURED_TAIL_BYTES = 64 * 1024  # what CapturedStderr.text keeps: the end, where the reason is


@dataclass
class CapturedStderr:
    """What was written to file descriptor 2 inside captured_stderr."""

    path: Path | None = None  # the log file kept, when captured_stderr was given a log_prefix
    text: str = ""  # its last CAPTURED_TAIL_BYTES, decoded; filled in when the block ends


@contextmanager
def captured_stderr(log_prefix: str | None = None) -> Iterator[CapturedStderr]:
    """Send what is written to file descriptor 2 meanwhile (native code's logs: ONNX Runtime's
    reason for a provider that did not start, Ray's start-up lines) into a file instead of the
    terminal. Without `log_prefix` the file is anonymous and gone afterwards; with it, it is a
    `<log_prefix>*.log` file in the temporary folder, kept (its path in .path). Either way .text
    holds the end of what was written once the block ends. Works at the descriptor level, so
    C++ writes are caught, which redirecting sys.stderr alone would miss."""
    captured = CapturedStderr()
    if log_prefix is None:
        log = tempfile.TemporaryFile(mode="w+b")
    else:
        fd, name = tempfile.mkstemp(prefix=log_prefix, suffix=".log")
        log, captured.path = os.fdopen(fd, "w+b"), Path(name)
    with log:
        sys.stderr.flush()  # Python's own buffered text still goes where it was meant to
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(max(0, os.fstat(log.fileno()).st_size - CAPTURED_TAIL_BYTES))
            captured.text = log.read().decode("utf-8", "replace")
