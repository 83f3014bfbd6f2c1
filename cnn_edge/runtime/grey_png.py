"""A fast path for the commonest input, a small 8-bit grey PNG (MNIST's own files). Torch-free.

Pillow's PNG plugin spends most of a 28x28 file's time in Python: probing, parsing chunks,
building the image, copying the pixels out. For a plain 8-bit grey PNG, the chunks are checked
here, strictly, and the image data goes straight to the zlib decoder and unfilter the plugin uses
(Pillow's "zip" decoder): the same code on the same bytes, so the same pixels and the same failures.
(libspng, through pyspng, decodes faster, but accepts corrupt streams that Pillow refuses; checking
the whole zlib stream first leaves it about 4 us per 28x28 file ahead: not worth a dependency.)

Anything else, or any doubt, returns None, and the caller takes the full path, which then gives
its own pixels or its own error: a file the full path refuses is never read here. Accepted: the
signature, IHDR first (13 bytes, 8-bit grey, no interlace, standard compression and filter
methods), then only the ancillary chunks that cannot change the pixels or the orientation (gAMA,
sRGB, pHYs, cHRM at their exact lengths), then IDAT chunks, then IEND, which ends the file.
Every chunk's CRC but IDAT's is checked, as Pillow checks them; Pillow does not check IDAT's.
"""
from __future__ import annotations

import struct
import zlib
from typing import Optional

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Files up to this size are read whole in one call and tried here; larger ones take the full path.
FAST_MAX_BYTES = 64 * 1024
# Ancillary chunks allowed before IDAT, with their exact lengths: none of them changes the pixels
# Pillow returns (the runtime applies no gamma or colour profile), and Pillow parses each safely.
HARMLESS = {b"gAMA": 4, b"sRGB": 1, b"pHYs": 9, b"cHRM": 32}
_CHUNK = struct.Struct(">I4s")


def _chunks(data: bytes) -> Optional[tuple[int, int, list[bytes]]]:
    """(width, height, IDAT payloads) of a plain 8-bit grey PNG's chunks, or None."""
    end = len(data)
    pos = len(PNG_SIGNATURE)
    idat: list[bytes] = []
    size = None
    while pos + 12 <= end:
        length, cid = _CHUNK.unpack_from(data, pos)
        body = pos + 8
        after = body + length + 4
        if after > end:
            return None
        if cid == b"IDAT":
            if size is None:
                return None
            idat.append(data[body : body + length])
        else:
            if zlib.crc32(data[pos + 4 : body + length]) != int.from_bytes(data[body + length : after], "big"):
                return None
            if size is None:
                if cid != b"IHDR" or length != 13:
                    return None
                w, h, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, body)
                if (depth, colour, compression, filtering, interlace) != (8, 0, 0, 0, 0) or w < 1 or h < 1:
                    return None
                size = (w, h)
            elif cid == b"IEND":
                return (*size, idat) if idat and length == 0 and after == end else None
            elif idat or HARMLESS.get(cid) != length:
                return None
        pos = after
    return None


def grey_png(data: bytes, max_pixels: int, max_side: int) -> Optional[np.ndarray]:
    """(H, W) uint8 pixels of `data`, a whole file, when it is a plain 8-bit grey PNG of at most
    `max_pixels` pixels and with no side of `max_side` or more (those are reduced on the full
    path); None otherwise, or when decoding fails (the full path then says why)."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    parsed = _chunks(data)
    if parsed is None:
        return None
    w, h, idat = parsed
    if w * h > max_pixels or max(w, h) >= max_side:
        return None
    try:
        return _zip_decode(b"".join(idat), w, h)
    except Exception:  # the full path gives the error
        return None


def _zip_decode(idat: bytes, w: int, h: int) -> Optional[np.ndarray]:
    """What Image.frombytes("L", (w, h), idat, "zip", "L") then tobytes() do, without the Image
    object around them (half the time for 28x28): the same decoder, judged the same way."""
    im = Image.core.new("L", (w, h))
    decoder = Image._getdecoder("L", "zip", ("L",))
    decoder.setimage(im, (0, 0, w, h))
    consumed, error = decoder.decode(idat)
    if consumed >= 0 or error != 0:  # not enough image data, or corrupt data (frombytes's tests)
        return None
    encoder = Image._getencoder("L", "raw", ("L",))
    encoder.setimage(im, (0, 0, w, h))
    parts = []
    status = 0
    while not status:
        _, status, chunk = encoder.encode(65536)
        parts.append(chunk)
    return np.frombuffer(b"".join(parts), np.uint8).reshape(h, w) if status > 0 else None
