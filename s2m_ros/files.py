"""Shared CLI helpers: image discovery and reading, progress bars, JSON output.

Also the one header check every image decoder of the package goes through (``read_image_header`` /
``decode_image``): encoded bytes are refused from their header, before OpenCV allocates a pixel, when
they claim more than a pixel limit or their header is broken (a 600-byte JPEG can claim 65000x65000, a
400 KB PNG can inflate to 400 MB).
"""
import errno
import io
import json
import math
import os
import pathlib
import re
import struct
import sys
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

#: Upper bound on the pixels of an image we agree to decode (a 16k x 16k frame is not a camera image,
#: and decoding it would stall a real-time node). The ROS conversions use the same default.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


class ImageDataError(ValueError):
    """Encoded image bytes that are refused (too large, broken header, wrong format, undecodable).

    Attributes:
        value: what the bytes are or claim, short text, e.g. ``"70000x70000 PNG"`` or ``"613 bytes"``.
        reason: what is wrong with them.
    """

    def __init__(self, value, reason):
        self.value = value
        self.reason = reason
        super().__init__("%s: %s" % (value, reason))


@dataclass(frozen=True)
class ImageHeader:
    """What the header of encoded image bytes claims (nothing decoded)."""

    format: str  # Pillow's format name: "JPEG", "PNG", "BMP", "TIFF", "WEBP", ...
    width: int
    height: int
    mode: str  # Pillow's mode: "L", "RGB", "RGBA", "CMYK", "I;16", "P", ...
    bits: int  # bits per sample as stored; 0 where the header reader does not say


# JPEG and PNG (the formats of camera streams): magic bytes -> Pillow's reader. The reader is built
# directly: it parses the header only (markers up to the first scan, chunks up to the first IDAT) and,
# unlike Image.open, adds no decompression-bomb check of Pillow's own, whose warning can only be
# silenced through the process-wide (not thread-safe) warnings filters. Pillow refuses on its own the
# depths and modes it does not know (12-bit JPEG, 2-layer JPEG, invalid PNG bit depth / colour type).
_HEADER_READERS = {
    "JPEG": (b"\xff\xd8\xff", JpegImagePlugin.JpegImageFile),
    "PNG": (b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
}
# what Pillow's header parsers raise on hostile bytes (UnidentifiedImageError is an OSError). Opening a
# JPEG also parses its EXIF block (for the dpi), which warns on corrupt tags: printed once by default,
# raised where warnings are errors (pytest -W error), and then a broken header like the others.
_BROKEN_HEADER = (SyntaxError, OSError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error,
                  Warning)


def read_image_header(data, max_pixels=MAX_IMAGE_PIXELS, formats=("JPEG", "PNG")):
    """The header of encoded image bytes, read without decoding a pixel.

    Raises ImageDataError when the header claims more than ``max_pixels`` pixels, is broken or
    truncated, or the bytes (by content) are none of ``formats``. ``formats=None`` accepts any format:
    JPEG and PNG are still checked strictly; other bytes are identified by Pillow (BMP, TIFF, WebP, ...)
    and their claimed size checked, and None is returned when Pillow cannot identify them (the caller
    may still let OpenCV try, whose own pixel limit then applies).
    """
    data = memoryview(_as_uint8(data))
    size = "%d bytes" % len(data)
    if not len(data):
        raise ImageDataError(size, "empty")
    head = bytes(data[:8])
    kind = next((name for name, (magic, _) in _HEADER_READERS.items() if head.startswith(magic)), None)
    if kind is None:
        if formats is not None:
            raise ImageDataError(size, "not %s data" % " or ".join(formats))
        return _other_header(data, max_pixels)
    if formats is not None and kind not in formats:
        raise ImageDataError(size, "%s data, expected %s" % (kind, " or ".join(formats)))
    try:
        im = _HEADER_READERS[kind][1](io.BytesIO(data))
    except _BROKEN_HEADER as exc:
        raise ImageDataError(size, "broken or truncated %s header (%s)" % (kind, _one_line(exc))) from None
    if kind == "JPEG":
        bits = int(im.bits)
    else:  # IHDR is the first chunk; Pillow has checked its CRC
        bits = data[24] if bytes(data[12:16]) == b"IHDR" else 0
    header = ImageHeader(kind, int(im.size[0]), int(im.size[1]), str(im.mode), int(bits))
    _check_pixels(header, max_pixels)
    if kind == "PNG":
        _check_png_chunks(data)
    return header


def _check_png_chunks(data):
    """Refuse a PNG chunk whose declared length runs past the end of the data: OpenCV allocates a chunk's
    declared length before reading it (a 3 KB PNG whose IDAT claims 2.6 GB took 2.5 GB of memory)."""
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = bytes(data[pos + 4:pos + 8])
        if pos + 12 + length > end:
            raise ImageDataError("%d bytes" % end, "PNG chunk %r at byte %d claims %d bytes, past the end of the "
                                 "data" % (kind.decode("latin-1"), pos, length))
        if kind == b"IEND":
            return
        pos += 12 + length


def _other_header(data, max_pixels):
    """Header of bytes that are neither JPEG nor PNG, by Pillow's identification; None when unknown."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit (and raises above twice it): our limit decides instead.
            # Its other warnings (corrupt TIFF tags, ...) are noise here: broken data fails below or
            # in OpenCV. The filter change is process-wide, but only the file readers come here
            # (camera streams are JPEG/PNG and take the path above).
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDataError("%d bytes" % len(data), "image larger than the limit of %d pixels (%s)" % (
            max_pixels, _one_line(exc))) from None
    except _BROKEN_HEADER:
        return None
    header = ImageHeader(str(im.format), int(im.size[0]), int(im.size[1]), str(im.mode), 0)
    _check_pixels(header, max_pixels)
    return header


def _check_pixels(header, max_pixels):
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise ImageDataError("%dx%d %s" % (header.width, header.height, header.format),
                             "claims %d pixels, more than the limit of %d pixels" % (pixels, max_pixels))


def decode_image(data, flags=cv2.IMREAD_COLOR, max_pixels=MAX_IMAGE_PIXELS, formats=None):
    """OpenCV decode of encoded bytes after ``read_image_header``; ``(array, header)`` (header None when
    Pillow did not know the format). Every failure is an ImageDataError, OpenCV's included."""
    data = _as_uint8(data)
    header = read_image_header(data, max_pixels=max_pixels, formats=formats)
    what = header.format if header is not None else "image"
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as exc:  # e.g. OpenCV's own pixel limit, or a codec assertion
        raise ImageDataError("%d bytes" % data.size, "OpenCV cannot decode this %s data (%s)" % (
            what, _one_line(exc))) from None
    if img is None or img.size == 0:
        raise ImageDataError("%d bytes" % data.size, "corrupt or truncated %s data" % header.format
                             if header is not None else "not an image format OpenCV can decode")
    if img.shape[0] * img.shape[1] > max_pixels:  # only when Pillow did not know the format
        raise ImageDataError("%dx%d %s" % (img.shape[1], img.shape[0], what),
                             "image larger than the limit of %d pixels" % max_pixels)
    return img, header


def _as_uint8(data):
    """Flat contiguous uint8 view of bytes-like data or an array (no copy when it is one already)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)


def _one_line(exc):
    """The gist of an exception's message on one short line (OpenCV's source-path prefix dropped)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    text = re.sub(r"^OpenCV\([^)]*\) \S+: error: ", "", text)
    return text if len(text) <= 120 else text[:117] + "..."


def iter_image_paths(inputs, limit=0):
    """Files given directly, plus the files of given folders (sorted, not recursive). Any file OpenCV
    can decode counts as an image whatever its extension; hidden files are skipped."""
    if limit < 0:
        raise ValueError("limit must be >= 0, got %r" % (limit,))
    out = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
        elif p.is_file():
            out.append(p)
        elif p.exists():  # a device, a socket, a FIFO: not something to read images from
            raise OSError(errno.EINVAL, "not a regular file or folder", str(p))
        else:
            raise FileNotFoundError("no such file or folder: %s" % p)
    return out[:limit] if limit else out


def read_image(path, max_pixels=MAX_IMAGE_PIXELS):
    """HxWx3 uint8 BGR image from any format OpenCV decodes (by content, not extension).

    ValueError (one line, naming the file) when it is no image, is broken, or claims more than
    ``max_pixels`` pixels (checked from the header, before decoding, for every format Pillow knows).
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        return decode_image(data, cv2.IMREAD_COLOR, max_pixels=max_pixels)[0]
    except ImageDataError as exc:
        raise ValueError("cannot read image %s: %s" % (path, exc)) from None


def iter_images(paths, desc="", show_progress=None, on_skip=None):
    """(path, BGR image) for each path, with a progress bar. A file that cannot be read or decoded is
    skipped: ``on_skip(path, exception)`` is called for it (default: a "skipped: ..." line on stderr)."""
    for path in progress(paths, total=len(paths), desc=desc, enabled=show_progress):
        try:
            image = read_image(path)
        except (ValueError, OSError) as exc:  # undecodable (ValueError), unreadable (OSError): this file only
            if on_skip is None:
                print("skipped: %s" % exc, file=sys.stderr)
            else:
                on_skip(path, exc)
            continue
        yield path, image


def progress(iterable, total=None, desc="", enabled=None):
    """tqdm progress bar on stderr (only when stderr is a terminal, unless forced)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


class YamlFileError(ValueError):
    """A YAML file that cannot be loaded. ``kind``: ``folder``, ``unreadable``, ``syntax`` or ``binary``;
    ``detail``: one line (the OS error, or YAML's problem); ``line`` / ``column``: 1-based, when YAML says.
    Each caller words the message its users see; ``reason`` is the wording of the node start-up checks."""

    def __init__(self, path, kind, detail, line=None, column=None):
        self.path, self.kind, self.detail, self.line, self.column = path, kind, detail, line, column
        super().__init__("%s: %s" % (path, self.reason))

    @property
    def at(self):
        return " at line %d, column %d" % (self.line, self.column) if self.line is not None else ""

    def described(self, what):
        """The commands' wording, naming the file as ``what``: ``cannot read <what> <path>: <detail>`` or
        ``<what> <path> is not valid YAML: <problem> (line L, column C)``."""
        if self.kind in ("folder", "unreadable"):
            return "cannot read %s %s: %s" % (what, self.path, self.detail)
        where = " (line %d, column %d)" % (self.line, self.column) if self.line is not None else ""
        return "%s %s is not valid YAML: %s%s" % (what, self.path, self.detail, where)

    @property
    def reason(self):
        return {"folder": "is a folder, not a YAML file", "unreadable": "cannot be read (%s)" % self.detail,
                "syntax": "not valid YAML%s: %s" % (self.at, self.detail),
                "binary": "not a YAML text file (%s)" % self.detail}[self.kind]


def read_yaml_file(path):
    """``yaml.safe_load`` of the file at ``path``, read as bytes (an encoding problem is a YAML error, not a
    UnicodeDecodeError). Every failure is a :class:`YamlFileError`."""
    import yaml

    try:
        with open(path, "rb") as f:
            return yaml.safe_load(f)
    except IsADirectoryError as exc:
        raise YamlFileError(path, "folder", exc.strerror) from None
    except OSError as exc:
        raise YamlFileError(path, "unreadable", exc.strerror or str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise YamlFileError(path, "syntax", problem, *((mark.line + 1, mark.column + 1) if mark else ())) from None
    except ValueError as exc:  # bytes that are no text (a binary file)
        raise YamlFileError(path, "binary", " ".join(str(exc).split())) from None


def write_json(path, data):
    """JSON with NaN/inf written as null (valid JSON for every reader). The text is made first, so a
    value that cannot be written is a TypeError before the file is touched; an OSError (full disk,
    no permission, a file where a folder should be) names ``path``."""
    text = json.dumps(_jsonable(data), indent=1, sort_keys=False) + "\n"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(str(path))), exist_ok=True)
        with open(str(path), "w") as f:
            f.write(text)
    except OSError as exc:
        if exc.filename is None and exc.strerror:  # a failed write() or close() does not name the file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
