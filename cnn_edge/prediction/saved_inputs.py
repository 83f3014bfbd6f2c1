"""`predict --save-inputs DIR`: the 28x28 input the model saw for each row, as a PNG file. Torch-free.

Each classified row gets DIR/ROW_STEM.png: ROW is the input's position in the run's list of inputs
(0-based, zero-padded to 6 digits, more when there are more inputs: the files sort in row order),
STEM the input's file name without its extension (anything but letters, digits, '-', '_' and '.'
replaced by '_', cut to 80 characters). A failed row saw nothing and gets no file.

The model sees float32 values (0..255, not whole numbers after resampling); the files are 16-bit
grey PNGs holding round(value * 257), so value = pixel / 257 to within 1/514 of a grey level, and
any viewer shows them as the 8-bit picture. Files are written atomically; a file of the same name
is replaced (a rerun writes the same image). DIR may not hold any of the run's inputs, so nothing
the user gave is ever overwritten, and a later run over the inputs' folders never reads them back.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..core.errors import ConfigError, OutputPathError
from ..core.files import atomic_write_bytes
from .rows import RowBatch

SCALE = 257  # 0..255 -> 0..65535
STEM_CHARS = re.compile(r"[^A-Za-z0-9._-]")
STEM_MAX = 80


def input_png(pixels: np.ndarray) -> bytes:
    """(28, 28) model input, 0..255 float -> a 16-bit grey PNG's bytes (round(value * SCALE))."""
    values = np.rint(np.clip(np.asarray(pixels, np.float64), 0.0, 255.0) * SCALE).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format="PNG")  # uint16: mode I;16
    return buf.getvalue()


def read_input_png(path) -> np.ndarray:
    """A file written by input_png -> the (28, 28) float32 input it holds (to within 1/514)."""
    with Image.open(path) as img:
        return np.asarray(img, np.float32) / SCALE


class SavedInputs:
    """The folder --save-inputs writes, for a run over `paths` (every input, in order)."""

    def __init__(self, folder: str | os.PathLike, paths: Sequence[str]):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputPathError(f"--save-inputs {self.folder} is a file, not a folder; give a folder "
                                  f"(it is made when missing)")
        here = self.folder.resolve()
        for path in paths:
            if "://" in path:
                continue  # an object in a store is never in a local folder
            where = Path(path).resolve()
            if where == here or here in where.parents:
                raise ConfigError(f"--save-inputs {self.folder} holds the input {path}: give a folder of its own, "
                                  f"so that no input is ever overwritten or read back as one")
        self.index = {p: i for i, p in enumerate(paths)}
        self.width = max(6, len(str(max(len(paths) - 1, 0))))
        self.written = 0

    def name(self, path: str) -> str:
        """The file name of `path`'s row."""
        stem = STEM_CHARS.sub("_", os.path.splitext(os.path.basename(path))[0])[:STEM_MAX]
        return f"{self.index[path]:0{self.width}d}_{stem or 'input'}.png"

    def write(self, batch: RowBatch) -> None:
        """One PNG per classified row of `batch` (which carries its inputs: PredictConfig.keep_inputs)."""
        assert batch.inputs is not None, "rows without their inputs: PredictConfig.keep_inputs was not set"
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, error, pixels in zip(batch.paths, batch.errors, batch.inputs):
            if not error:
                atomic_write_bytes(self.folder / self.name(path), input_png(pixels))
                self.written += 1
