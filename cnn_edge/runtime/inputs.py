"""Turn the command line's files, folders and glob patterns into an ordered list of paths. Torch-free."""
from __future__ import annotations

import glob
import os
from typing import Iterable, Iterator

from ..errors import ConfigError

# What a folder contributes; a file named on the command line is taken whatever its name.
IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".pgm", ".ppm", ".pbm", ".pnm", ".tga", ".ico",
})
_GLOB_CHARS = frozenset("*?[")


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk(folder: str, recursive: bool) -> Iterator[str]:
    """Image files in `folder`, sorted by name, sub-folders after files when recursive."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise ConfigError(f"cannot list folder {folder}: {exc.strerror}") from None
    subdirs = []
    for entry in entries:
        if entry.is_dir():
            subdirs.append(entry.path)
        elif is_image_name(entry.name):
            yield entry.path
    if recursive:
        for sub in subdirs:
            yield from _walk(sub, recursive)


def collect_inputs(specs: Iterable[str], *, recursive: bool = False) -> list[str]:
    """Files (any name), folders (image files in them; `recursive` goes down) and glob patterns
    (`**` with `recursive`), in the order given, each path once. A file that does not exist stays
    in the list, so that it gets a row with its error; a pattern or folder that matches nothing
    adds nothing. Raises ConfigError when nothing at all is found."""
    seen: set[str] = set()
    paths: list[str] = []
    for spec in specs:
        spec = str(spec)
        if os.path.isdir(spec):
            found: Iterable[str] = _walk(spec, recursive)
        elif not os.path.exists(spec) and _GLOB_CHARS & set(spec):
            found = sorted(p for p in glob.glob(spec, recursive=recursive) if os.path.isfile(p))
        else:
            found = [spec]
        for path in found:
            if path not in seen:
                seen.add(path)
                paths.append(path)
    if not paths:
        given = ", ".join(map(str, specs)) or "(nothing)"
        raise ConfigError(f"no images found in {given}; give image files, folders (--recursive for sub-folders) "
                          f"or glob patterns such as 'scans/*.png'")
    return paths

