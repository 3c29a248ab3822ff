"""Hostile encoded images for the decoder tests (imported by test modules, not a test itself).

Each is tiny on disk or on the wire and claims (or inflates to) far more pixels than a camera frame:
the red team's payloads of issue 19, built here from small real encodings with patched headers.
"""
import functools
import struct
import zlib

import cv2
import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_jpeg(height=48, width=64, channels=3):
    """A real JPEG of a gradient, as bytes."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 4) % 256, (y * 5) % 256, ((x + y) * 2) % 256]
    img = np.stack(planes[:channels], axis=2).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img if channels > 1 else img[:, :, 0])
    assert ok
    return buf.tobytes()


def small_png(height=48, width=64, dtype=np.uint8, channels=3):
    """A real PNG of a gradient, as bytes (16-bit when ``dtype`` is uint16)."""
    y, x = np.mgrid[0:height, 0:width]
    scale = 257 if dtype == np.uint16 else 1
    planes = [(x * 4) % 256, (y * 5) % 256, ((x + y) * 2) % 256, np.full_like(x, 200)]
    img = (np.stack(planes[:channels], axis=2) * scale).astype(dtype)
    ok, buf = cv2.imencode(".png", img if channels > 1 else img[:, :, 0])
    assert ok
    return buf.tobytes()


def jpeg_claiming(width, height, data=None):
    """``data`` (a real JPEG) with the height and width of its SOF0 segment patched."""
    data = bytearray(small_jpeg() if data is None else data)
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "no baseline SOF0 marker"
    # FFC0, segment length (2), sample precision (1), height (2), width (2)
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width, height, data=None):
    """``data`` (a real PNG) with the size in its IHDR patched and the chunk's CRC recomputed."""
    data = bytearray(small_png() if data is None else data)
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@functools.lru_cache(maxsize=None)
def zeros_png(width=20000, height=20000):
    """A valid 8-bit grey PNG of zeros (~390 KB for 20000x20000 that inflates to 400 MB), written with
    zlib row block by row block so no full-size array is ever made."""
    row = bytes(width + 1)  # filter byte 0 + the row
    block = 500
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(row * min(block, height - y)) for y in range(0, height, block)]
    parts.append(deflate.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_MAGIC + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


def png_with_idat_claiming(length, data=None):
    """``data`` (a real PNG) with the declared length of its first IDAT chunk patched (not covered by the
    CRC): OpenCV allocates that many bytes before finding the data is not there."""
    data = bytearray(small_png() if data is None else data)
    idat = data.find(b"IDAT") - 4
    data[idat:idat + 4] = struct.pack(">I", length)
    return bytes(data)


def jpeg_with_corrupt_exif():
    """A real JPEG whose only dpi source is an EXIF block (no JFIF segment) with XResolution pointing past
    the end of the block: Pillow warns ("Truncated File Read") while reading the header."""
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x0128] = 2  # ResolutionUnit: inch
    exif[0x011A] = 300.0  # XResolution (a rational: stored at an offset)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG", exif=exif)
    data = bytearray(buf.getvalue())
    app0 = data.find(b"\xff\xe0")
    if app0 >= 0:  # drop JFIF: Pillow then takes the dpi from EXIF
        del data[app0:app0 + 2 + int.from_bytes(data[app0 + 2:app0 + 4], "big")]
    tiff = data.find(b"Exif\x00\x00") + 6
    order = {b"II": "<", b"MM": ">"}[bytes(data[tiff:tiff + 2])]
    entry = data.find(struct.pack(order + "HH", 0x011A, 5), tiff)  # XResolution, type RATIONAL
    assert entry > 0
    data[entry + 8:entry + 12] = struct.pack(order + "I", 0xFFF0)
    return bytes(data)


def bmp_claiming(width, height):
    """A 24-bit BMP header claiming ``width`` x ``height`` followed by a few pixels only."""
    ok, buf = cv2.imencode(".bmp", np.full((4, 4, 3), 7, np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)
