"""MNIST: find it, read its IDX files strictly, or download it with torchvision.

Where MNIST comes from, in order: the `--data-dir` flag, the CNN_EDGE_DATA environment
variable, then ./datasets (torchvision's download when the files are not there yet).
Reading a local folder needs numpy only, so validation never imports torch.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.constants import IMAGE_SIZE, NUM_CLASSES
from ..core.errors import ConfigError, DataError

ENV_VAR = "CNN_EDGE_DATA"
DEFAULT_ROOT = Path("datasets")  # torchvision's download lands in ./datasets/MNIST/raw
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST uses
_FIX = f"point --data-dir (or {ENV_VAR}) at a folder holding the four MNIST IDX files, gzipped or not"


@dataclass(frozen=True)
class MnistSplit:
    images: np.ndarray  # (N, 28, 28) uint8, 0 = background, 255 = ink
    labels: np.ndarray  # (N,) int64 in 0..9
    source: str  # the folder it was read from

    def __len__(self) -> int:
        return len(self.labels)


def resolve_data_dir(flag: str | os.PathLike | None) -> Path | None:
    """The folder the user named (flag first, then the environment), or None for the default."""
    if flag:
        return Path(flag)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else None


def _find_file(folder: Path, stem: str) -> Path | None:
    for base in (folder, folder / "MNIST" / "raw", folder / "raw"):
        for name in (stem, stem + ".gz"):
            if (base / name).is_file():
                return base / name
    return None


# The largest IDX payload read: MNIST's training images are 47,040,016 bytes. A file, or a gzip
# stream, that holds or declares more is refused before it is read or inflated in full.
MAX_IDX_BYTES = 256 * 1024 * 1024


def _inflate(path: Path, raw: bytes, header_size: int) -> bytes:
    """Inflate a gzipped IDX file only as far as its header says it goes, never past MAX_IDX_BYTES:
    a gzip bomb costs the bytes it declares, not the gigabytes it would inflate to."""
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = stream.decompress(raw, header_size)
        dims = _dims(path, head, header_size)
        expected = header_size + math.prod(dims)
        if expected > MAX_IDX_BYTES:
            raise DataError(f"{path} declares {dims} = {expected - header_size:,} bytes of data, more than the "
                            f"{MAX_IDX_BYTES:,} an MNIST file holds; it is not MNIST")
        body = stream.decompress(stream.unconsumed_tail, expected - len(head) + 1)
    except zlib.error as exc:
        raise DataError(f"cannot read {path}: corrupt gzip data ({exc}); re-download the file") from None
    data = head + body
    if len(data) > expected:
        raise DataError(f"{path} holds more data than its header declares ({dims}); re-download the file")
    return data


def _dims(path: Path, raw: bytes, header_size: int) -> tuple[int, ...]:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or raw[3] != (header_size - 4) // 4:
        raise DataError(
            f"{path} is not an MNIST IDX file (bad magic number {raw[:4].hex() or 'empty'}); {_FIX}"
        )
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated (header incomplete); re-download the file")
    return tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range((header_size - 4) // 4))


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """Read one IDX file (gzipped or not), checking magic, dimensions and length against the real
    size (Python integers: declared sizes cannot overflow) with bounded memory. An empty set is an error."""
    header_size = 4 + 4 * expected_dims
    try:
        if path.stat().st_size > MAX_IDX_BYTES:
            raise DataError(f"{path} is {path.stat().st_size:,} bytes, more than an MNIST file; {_FIX}")
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.__class__.__name__}: {exc}; re-download the file") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _inflate(path, raw, header_size)
    dims = _dims(path, raw, header_size)
    count = math.prod(dims)
    if len(raw) - header_size != count:
        raise DataError(
            f"{path} is truncated or corrupt: header says {dims} = {count} bytes, "
            f"file holds {len(raw) - header_size}; re-download the file"
        )
    if count == 0:
        raise DataError(f"{path} holds no images or labels (dimensions {dims}); {_FIX}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()  # writable


def _read_folder(folder: Path, split: str) -> MnistSplit:
    if not folder.is_dir():
        raise DataError(f"MNIST folder {folder} does not exist; {_FIX}")
    paths = {}
    for kind in ("images", "labels"):
        stem = FILES[(split, kind)]
        found = _find_file(folder, stem)
        if found is None:
            raise DataError(f"{stem}[.gz] not found in {folder}; {_FIX}")
        paths[kind] = found
    images = read_idx(paths["images"], 3)
    labels = read_idx(paths["labels"], 1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{paths['images']} holds {images.shape[1:]} images, expected 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{paths['images']} has {len(images)} images but {paths['labels']} has {len(labels)} labels"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{paths['labels']} holds label {labels.max()}, expected 0..9")
    return MnistSplit(images, labels.astype(np.int64), str(folder))


def _download(root: Path, split: str) -> MnistSplit:
    """torchvision's normal download into ./datasets, for users who are online."""
    try:
        from torchvision import datasets
    except ImportError:
        raise DataError(f"no MNIST folder given and torchvision is not installed; {_FIX}") from None
    try:
        ds = datasets.MNIST(root=str(root), train=split == "train", download=True)
    except Exception as exc:  # torchvision raises plain RuntimeError/URLError when offline
        raise DataError(f"could not download MNIST into {root} ({exc.__class__.__name__}); {_FIX}") from None
    return MnistSplit(ds.data.numpy(), ds.targets.numpy().astype(np.int64), str(root))


@dataclass(frozen=True)
class MnistData:
    """Both splits, read once (by the CLI) and handed to every stage that needs them."""

    train: MnistSplit
    test: MnistSplit

    @property
    def source(self) -> str:
        return self.test.source


def load_mnist(data_dir: str | os.PathLike | None = None) -> MnistData:
    """Read the training and the test split (the pipeline's one read of MNIST)."""
    return MnistData(load_split("train", data_dir), load_split("test", data_dir))


def load_split(split: str, data_dir: str | os.PathLike | None = None) -> MnistSplit:
    """Read the 'train' or 'test' split as whole arrays."""
    assert split in ("train", "test"), split
    folder = resolve_data_dir(data_dir)
    if folder is not None:
        return _read_folder(folder, split)
    if _find_file(DEFAULT_ROOT, FILES[(split, "images")]) and _find_file(DEFAULT_ROOT, FILES[(split, "labels")]):
        return _read_folder(DEFAULT_ROOT, split)
    return _download(DEFAULT_ROOT, split)


# Seed of the fixed permutation that picks the validation split. It is not the training seed:
# every run, and the quantizer's accuracy guard, hold out the same images.
VALIDATION_SPLIT_SEED = 12345


def split_indices(n: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of the first n training images; validation has val_size."""
    if val_size >= n:
        raise ConfigError(f"--val-size {val_size} leaves no training images: only {n} are used; choose a smaller "
                          f"--val-size (e.g. {max(1, n // 10)}), or 0 for none")
    order = np.random.default_rng(VALIDATION_SPLIT_SEED).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file, as MNIST does (for tests and small fixtures)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
