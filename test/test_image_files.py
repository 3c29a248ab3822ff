"""Hostile image files never get past the readers of `s2m segment` / `s2m eval` (s2m_ros.files.read_image,
the dataset label reader): refused from their header with a ValueError naming the file, never decoded."""
import pathlib
import tempfile
import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import image_bombs as bombs
from s2m_ros.eval.datasets import DatasetError, open_dataset
from s2m_ros.files import MAX_IMAGE_PIXELS, read_image, read_image_header


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if OpenCV is asked to decode anything."""
    def imdecode(*args, **kwargs):
        raise AssertionError("cv2.imdecode called: the file should have been refused from its header")

    monkeypatch.setattr(cv2, "imdecode", imdecode)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name,data,claim", [
    ("sof.jpg", bombs.jpeg_claiming(65000, 65000), "65000x65000 JPEG"),
    ("ihdr.png", bombs.png_claiming(70000, 70000), "70000x70000 PNG"),
    ("zeros.png", bombs.zeros_png(), "20000x20000 PNG"),
    ("lying-extension.png", bombs.jpeg_claiming(20000, 20000), "20000x20000 JPEG"),
    ("big.bmp", bombs.bmp_claiming(9000, 9000), "9000x9000 BMP"),
])
def test_huge_claims_are_refused_from_the_header(tmp_path, name, data, claim, no_decoding):
    path = write(tmp_path, name, data)
    with pytest.raises(ValueError) as err:
        read_image(path)
    message = str(err.value)
    assert str(path) in message and claim in message and "limit of %d pixels" % MAX_IMAGE_PIXELS in message
    assert "\n" not in message


@pytest.mark.parametrize("width,height", [(10000, 10000), (30000, 30000)])
def test_pillow_decompression_bomb_warning_and_error_become_our_value_error(tmp_path, width, height, no_decoding):
    # 10000x10000 is above Pillow's warning threshold (89 Mpx), 30000x30000 above its error threshold
    path = write(tmp_path, "bomb.bmp", bombs.bmp_claiming(width, height))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning would fail here
        with pytest.raises(ValueError, match="bomb.bmp.*limit of %d pixels" % MAX_IMAGE_PIXELS):
            read_image(path)


def test_png_chunk_longer_than_the_file_is_refused(tmp_path, no_decoding):
    path = write(tmp_path, "chunk.png", bombs.png_with_idat_claiming(3_000_000_000))
    with pytest.raises(ValueError, match=r"chunk\.png.*PNG chunk 'IDAT'.*3000000000 bytes"):
        read_image(path)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp", ".tiff"])
def test_max_pixels_at_the_limit_passes_and_below_it_is_refused_before_decoding(tmp_path, ext, monkeypatch):
    img = np.full((6, 9, 3), 77, np.uint8)
    ok, buf = cv2.imencode(ext, img)
    path = write(tmp_path, "img" + ext, buf.tobytes())
    assert read_image(path, max_pixels=54).shape == (6, 9, 3)
    assert read_image(path).shape == (6, 9, 3)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    with pytest.raises(ValueError, match=r"img\%s.*9x6 .*limit of 53 pixels" % ext):
        read_image(path, max_pixels=53)


def test_format_pillow_does_not_know_falls_back_to_opencv(tmp_path):
    ok, buf = cv2.imencode(".hdr", np.full((5, 7, 3), 0.5, np.float32))  # Radiance HDR: OpenCV only
    data = buf.tobytes()
    assert read_image_header(data, formats=None) is None
    path = write(tmp_path, "x.hdr", data)
    assert read_image(path).shape == (5, 7, 3)
    with pytest.raises(ValueError, match=r"x\.hdr.*7x5 image.*limit of 34 pixels"):
        read_image(path, max_pixels=34)  # checked after decoding: the header was not readable here
    # OpenCV's own error (above 2^30 pixels) is a ValueError too, not cv2.error
    path = write(tmp_path, "y.hdr", data.replace(b"-Y 5 +X 7", b"-Y 40000 +X 40000"))
    with pytest.raises(ValueError, match=r"y\.hdr.*OpenCV cannot decode"):
        read_image(path)


def test_non_images_and_truncated_files(tmp_path):
    for name, data in [("empty.png", b""), ("text.jpg", b"hello"), ("half.png", bombs.small_png()[:200]),
                       ("half.jpg", bombs.small_jpeg()[:300]), ("sof-only.jpg", bombs.small_jpeg()[:25])]:
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            read_image(write(tmp_path, name, data))


SEEDS = [bombs.small_jpeg(), bombs.small_png(), bombs.small_png(channels=4), bombs.bmp_claiming(4, 4),
         cv2.imencode(".webp", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
         cv2.imencode(".tiff", np.zeros((8, 8, 3), np.uint8))[1].tobytes()]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, len(SEEDS) - 1), cut=st.integers(0, 10 ** 6),
       patches=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=6),
       tail=st.binary(max_size=64))
def test_property_damaged_files_raise_only_value_errors_naming_the_file(seed, cut, patches, tail):
    data = bytearray(SEEDS[seed])
    for pos, value in patches:
        data[pos % len(data)] = value
    data = bytes(data[:cut % (len(data) + 1)]) + tail
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "damaged.img"
        path.write_bytes(data)
        try:
            img = read_image(path, max_pixels=64 * 48 * 4)
        except ValueError as exc:
            assert "damaged.img" in str(exc) and "\n" not in str(exc)
        else:
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


# --------------------------------------------------------------------------- dataset readers of `s2m eval`


def folders_dataset(root, label_bytes=None, image_bytes=None):
    (root / "images").mkdir(parents=True)
    (root / "labels_masks").mkdir()
    ok, img = cv2.imencode(".png", np.zeros((4, 6, 3), np.uint8))
    ok, lab = cv2.imencode(".png", np.zeros((4, 6), np.uint8))
    (root / "images" / "a.png").write_bytes(image_bytes or img.tobytes())
    (root / "labels_masks" / "a.png").write_bytes(label_bytes or lab.tobytes())
    return root


def test_dataset_label_claiming_a_huge_size_is_refused_from_its_header(tmp_path, no_decoding):
    root = folders_dataset(tmp_path / "ds", label_bytes=bombs.png_claiming(70000, 70000))
    with pytest.raises(DatasetError, match=r"labels_masks/a\.png.*70000x70000 PNG.*limit of %d" % MAX_IMAGE_PIXELS):
        open_dataset(root, layout="folders")[0]


def test_dataset_image_claiming_a_huge_size_is_refused_from_its_header(tmp_path):
    root = folders_dataset(tmp_path / "ds", image_bytes=bombs.jpeg_claiming(65000, 65000))
    with pytest.raises(DatasetError, match=r"images/a\.png.*65000x65000 JPEG"):
        open_dataset(root, layout="folders")[0]


def test_dataset_still_reads_good_files(tmp_path):
    sample = open_dataset(folders_dataset(tmp_path / "ds"), layout="folders")[0]
    assert sample.label.shape == (4, 6) and sample.image.shape == (4, 6, 3)
