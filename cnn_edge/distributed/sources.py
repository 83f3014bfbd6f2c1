"""Inputs of a run on Ray: local paths and object-store URIs, listed on the driver, read as bytes
on the cluster. Needs pyarrow (the `ray` extra).

A local argument is listed exactly as the local engine lists it (runtime/inputs.py), and its file
is opened the same way (runtime/images.open_regular_file: FIFOs and devices refused without
blocking), so rows and errors match. A URI (`s3://bucket/prefix/`, `gs://...`, anything pyarrow's
filesystems or fsspec read) is a prefix whose image objects are listed (all levels with -r), or one
object; one that names nothing stays in the list as itself and gets a "not found" row. Glob
patterns apply to local paths only.
"""
from __future__ import annotations

import os
import posixpath
from typing import Iterable

from ..core.constants import DEFAULT_MAX_FILE_BYTES
from ..core.errors import ConfigError, ImageError, first_line
from ..core.files import NOT_FOUND
from ..prediction.inputs import is_uri

_FILESYSTEMS: dict[str, object] = {}  # scheme://netloc -> its pyarrow filesystem, per process


def _root(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for a URI: pyarrow's own filesystems (s3, gs, hdfs),
    else fsspec's (az, http, ... when installed), wrapped for pyarrow. Cached per bucket."""
    import pyarrow.fs as pafs

    root = _root(uri)
    if root not in _FILESYSTEMS:
        try:
            fs, _ = pafs.FileSystem.from_uri(uri)
        except (ValueError, NotImplementedError, OSError) as exc:  # a scheme pyarrow does not know
            try:
                import fsspec

                fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.core.url_to_fs(uri)[0]))
            except (ImportError, ValueError) as exc2:
                raise ConfigError(f"cannot read {uri}: {first_line(exc)}; {first_line(exc2)}") from None
        _FILESYSTEMS[root] = fs
    return _FILESYSTEMS[root], uri.partition("://")[2]


def _list_uri(uri: str, recursive: bool) -> list[str]:
    import pyarrow.fs as pafs

    from ..prediction.inputs import is_image_name

    fs, path = filesystem(uri)
    try:
        info = fs.get_file_info(path.rstrip("/") or path)
        if info.type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=recursive))
            scheme = uri.partition("://")[0]
            return sorted(f"{scheme}://{f.path}" for f in found
                          if f.type == pafs.FileType.File and is_image_name(posixpath.basename(f.path)))
        if info.type == pafs.FileType.NotFound:
            bucket = path.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:  # no such bucket: no row can be made
                from .output import missing_bucket

                raise ConfigError(f"cannot read {uri}: {missing_bucket(uri)}")
    except OSError as exc:  # no credentials, no such bucket, no network: the user must fix it, not a row
        raise ConfigError(f"cannot list {uri}: {first_line(exc)}") from None
    return []  # one object, or nothing there: the argument stands for itself


def collect(specs: Iterable[str], *, recursive: bool = False) -> list[str]:
    """Local files, folders and patterns as the local engine lists them, and URIs; in the order
    given, each path once; an argument that names nothing stays, to get its row."""
    from ..prediction.inputs import collect_inputs

    seen: set[str] = set()
    paths: list[str] = []
    local: list[str] = []

    def add(found: list[str]) -> None:
        for p in found:
            if p not in seen:
                seen.add(p)
                paths.append(p)

    for spec in map(str, specs):
        if is_uri(spec):
            add(collect_inputs(local, recursive=recursive))
            local = []
            add(_list_uri(spec, recursive) or [spec])
        else:
            local.append(spec)
    add(collect_inputs(local, recursive=recursive))
    return paths


class FileTooLarge(ImageError):
    """A file above the size limit it was read with; `size` is its size in bytes."""

    def __init__(self, size: int, limit: int):
        from ..runtime.images import too_large_file

        super().__init__(too_large_file(size, limit))
        self.size, self.limit = size, limit

    def __reduce__(self):  # picklable with its own arguments, as every error of ours
        return FileTooLarge, (self.size, self.limit)


def read_bytes(path: str, limit: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """A file's or an object's bytes, its size checked against `limit` before anything is read.
    Raises ImageError (its row's error), never anything else."""
    if not is_uri(path):
        from ..runtime.images import open_regular_file

        with open_regular_file(path) as f:
            if (size := os.fstat(f.fileno()).st_size) > limit:
                raise FileTooLarge(size, limit)
            try:
                data = f.read(limit + 1)  # a file that grew since: still never more than the limit
            except OSError as exc:  # an I/O error half-way through the file
                raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None
    else:
        try:
            fs, inner = filesystem(path)
            with fs.open_input_file(inner) as f:
                if (size := f.size()) > limit:
                    raise FileTooLarge(size, limit)
                data = f.read(limit + 1)
        except ImageError:
            raise
        except FileNotFoundError:
            raise ImageError(NOT_FOUND) from None
        except ConfigError as exc:
            raise ImageError(str(exc)) from None
        except Exception as exc:  # a network error, a folder, access denied: this object's row
            raise ImageError(f"cannot read the object: {first_line(exc, 160)}") from None
    if len(data) > limit:
        raise FileTooLarge(len(data), limit)
    return data
