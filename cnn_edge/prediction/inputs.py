"""Turn the command line's files, folders and glob patterns into an ordered list of paths. Torch-free.

Walks never loop: a folder reached again through a symbolic link (a loop, or a second link to the
same folder) is walked once, so each file is listed once. Anything named like an image is listed,
whatever it is; the decoder then refuses what is not a regular file (a FIFO, a socket, a device)
with an error row, without blocking.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Iterable, Iterator

from ..core.errors import ConfigError

# What a folder contributes; a file named on the command line is taken whatever its name.
IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".pgm", ".ppm", ".pbm", ".pnm", ".tga", ".ico",
})
_GLOB_CHARS = frozenset("*?[")


def is_uri(path: str) -> bool:
    """An object-store or other fsspec URI (s3://bucket/key, gs://...), not a local path."""
    scheme, sep, _ = str(path).partition("://")
    return bool(sep) and scheme.isidentifier() and scheme != "file"


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def _entries(folder: str, top: bool) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        if top:
            raise ConfigError(f"cannot list folder {folder}: {exc.strerror}") from None
        return []  # a sub-folder that cannot be listed: listed as itself by the caller


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link that loops on itself: not a folder, and listed as a file
        return False


def _walk(folder: str, recursive: bool, seen: set, keep=is_image_name, top: bool = True) -> Iterator[str]:
    """Files in `folder` that `keep` accepts (by name), sorted, sub-folders after files when
    recursive (depth first, in name order); `seen` holds the folders walked already (device, inode).
    Iterative, with a stack of folders to visit: a tree of any depth (thousands of levels) is walked
    without recursion."""
    seen.add(_identity(folder))
    todo = [(folder, top)]  # folders still to list, the next one last
    while todo:
        current, is_top = todo.pop()
        if not is_top:
            identity = _identity(current)
            if identity is None or identity in seen:
                continue  # a loop, or a folder reached twice through links
            if not os.access(current, os.R_OK | os.X_OK):
                yield current  # its row says it cannot be read; its files cannot be counted
                continue
            seen.add(identity)
        subdirs = []
        for entry in _entries(current, is_top):
            if _is_dir(entry):
                subdirs.append(entry.path)
            elif keep(entry.name):
                yield entry.path
        if recursive:
            todo.extend((sub, False) for sub in reversed(subdirs))


def _pattern_regex(pattern: str) -> re.Pattern:
    """A glob pattern as a regular expression over whole paths: `*` and `?` stay within a
    component, `**` matches any number of folders."""
    out = []
    for i, part in enumerate(pattern.split("/")):
        if part == "**":
            out.append("(?:[^/]+/)*")
            continue
        j, piece = 0, ""
        while j < len(part):
            c = part[j]
            if c == "*":
                piece += "[^/]*"
            elif c == "?":
                piece += "[^/]"
            elif c == "[" and "]" in part[j + 2 :]:
                end = part.index("]", j + 2)
                body = part[j + 1 : end]
                piece += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                j = end
            else:
                piece += re.escape(c)
            j += 1
        out.append(piece + "/")
    return re.compile("".join(out).rstrip("/") + r"\Z", re.DOTALL)


def _glob(spec: str, recursive: bool) -> list[str]:
    if not (recursive and "**" in spec):
        return sorted(p for p in glob.glob(spec) if os.path.isfile(p))
    parts = spec.split("/")
    fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    base = "/".join(parts[:fixed]) or ("/" if spec.startswith("/") else ".")
    if not os.path.isdir(base):
        return []
    regex = _pattern_regex("/".join(parts[fixed:]))
    prefix = len(base.rstrip("/")) + 1
    found = (p for p in _walk(base, True, set(), keep=lambda name: not name.startswith(".")) if regex.match(p[prefix:]))
    paths = sorted(p if base != "." or spec.startswith("./") else p[2:] for p in found)
    return [p for p in paths if os.path.isfile(p)]


def collect_inputs(specs: Iterable[str], *, recursive: bool = False) -> list[str]:
    """Files (any name), folders (image files in them; `recursive` goes down) and glob patterns
    (`**` with `recursive`), in the order given, each path once.

    Every argument is accounted for, the same way: a file that does not exist, a folder with no
    image file in it and a pattern that matches nothing each stay in the list as themselves, so
    that each gets a row saying what was wrong (and the run exits 3)."""
    seen: set[str] = set()
    paths: list[str] = []
    for spec in specs:
        spec = str(spec)
        if os.path.isdir(spec):
            found: list[str] = list(_walk(spec, recursive, set()))
        elif not os.path.lexists(spec) and _GLOB_CHARS & set(spec):
            found = _glob(spec, recursive)
        else:
            found = [spec]
        for path in found or [spec]:
            if path not in seen:
                seen.add(path)
                paths.append(path)
    return paths
