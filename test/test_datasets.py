"""Dataset readers of `s2m eval`: both layouts on synthetic folders (exact masks) and on the real benchmarks."""
import pathlib
import tempfile

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from s2m_ros.eval.datasets import DEFAULTS, DatasetError, detect_layout, open_dataset

H, W = 12, 16


def _image(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _encoded(path, array, ext):
    """Write ``array`` encoded as ``ext`` under ``path`` whatever its extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(ext, array)
    assert ok
    path.write_bytes(buf.tobytes())


def _semantic(kind):
    lab = np.zeros((H, W), np.uint8)
    if kind == "ra":
        lab[2:5, 3:7] = 2       # 12 anomaly pixels
        lab[8:10, 10:13] = 2    # 6 anomaly pixels
    else:
        lab[1:4, 1:5] = 1       # 12 anomaly pixels
        lab[0, :] = 255         # 16 void pixels
        lab[10:12, 14:16] = 255  # 4 void pixels
    return lab


@pytest.fixture
def ra_root(tmp_path):
    """RoadAnomaly layout: a (JPEG, with instances), b (PNG, no instances), z.labels without an image."""
    root = tmp_path / "ra"
    frames = root / "frames"
    _encoded(frames / "a.jpg", _image(1), ".jpg")
    _png(frames / "b.png", _image(2))
    sem = _semantic("ra")
    inst = np.zeros((H, W), np.uint8)
    inst[2:5, 3:7] = 1
    inst[8:10, 10:13] = 2
    _png(frames / "a.labels" / "labels_semantic.png", sem)
    _png(frames / "a.labels" / "labels_instance.png", inst)
    _png(frames / "b.labels" / "labels_semantic.png", np.zeros((H, W), np.uint8))
    _png(frames / "z.labels" / "labels_semantic.png", sem)
    (frames / "a.labels" / "index.json").write_text("{}")
    (root / "frame_list.json").write_text("[]")
    return root


@pytest.fixture
def folders_root(tmp_path):
    """images/ + labels_masks/: JPEG bytes in 0.png, WebP 1.webp, 2.jpg with the SMIYC label naming."""
    root = tmp_path / "smiyc"
    _encoded(root / "images" / "0.png", _image(3), ".jpg")
    _encoded(root / "images" / "1.webp", _image(4), ".webp")
    _encoded(root / "images" / "2.jpg", _image(5), ".jpg")
    (root / "images" / "notes.txt").write_text("not an image")
    (root / "images" / ".DS_Store").write_bytes(b"\0\1")
    lab = _semantic("folders")
    _png(root / "labels_masks" / "0.png", lab)
    _png(root / "labels_masks" / "1.png", np.zeros((H, W), np.uint8))
    _png(root / "labels_masks" / "2_labels_semantic.png", lab)
    inst = np.zeros((H, W), np.uint16)
    inst[1:4, 1:3] = 7
    inst[1:4, 3:5] = 300  # 16-bit ids survive
    _png(root / "labels_instances" / "0.png", inst)
    return root


def test_roadanomaly_layout_exact(ra_root):
    assert detect_layout(ra_root) == "roadanomaly"
    ds = open_dataset(ra_root)
    assert (ds.layout, ds.name, len(ds)) == ("roadanomaly", "ra", 2)
    assert (ds.anomaly_values, ds.void_values) == ((2,), ())
    assert ds.names == ["a", "b"]
    assert ds.n_with_instances == 1
    assert ds.skipped == {"label_without_image": ["z.labels"]}
    a, b = list(ds)
    sem = _semantic("ra")
    assert a.image_path == ra_root / "frames" / "a.jpg"
    assert a.label_path == ra_root / "frames" / "a.labels" / "labels_semantic.png"
    assert np.array_equal(a.label, sem)
    assert a.anomaly.dtype == bool and np.array_equal(a.anomaly, sem == 2) and a.anomaly.sum() == 18
    assert a.void.dtype == bool and not a.void.any() and a.valid.all()
    assert a.instances.dtype == np.int32 and sorted(np.unique(a.instances)) == [0, 1, 2]
    assert np.array_equal(a.instances > 0, a.anomaly)
    assert a.image.shape == (H, W, 3) and a.image.dtype == np.uint8 and a.shape == (H, W)
    assert b.instances is None and b.instance_path is None and not b.anomaly.any()
    assert np.array_equal(b.image, _image(2))  # PNG is lossless
    d = ds.describe()
    assert d["n_images"] == 2 and d["n_with_instances"] == 1 and d["skipped"] == {"label_without_image": 1}


def test_folders_layout_exact(folders_root):
    assert detect_layout(folders_root) == "folders"
    ds = open_dataset(folders_root)
    assert (ds.layout, len(ds), ds.names) == ("folders", 3, ["0", "1", "2"])
    assert (ds.anomaly_values, ds.void_values) == ((1,), (255,))
    s0, s1, s2 = list(ds)
    lab = _semantic("folders")
    for s in (s0, s2):
        assert np.array_equal(s.anomaly, lab == 1) and s.anomaly.sum() == 12
        assert np.array_equal(s.void, lab == 255) and s.void.sum() == 20
        assert not (s.anomaly & s.void).any()
    assert s2.label_path.name == "2_labels_semantic.png"
    # JPEG bytes behind .png, and WebP, decode to the right size and (nearly) the right pixels.
    assert s0.image.shape == (H, W, 3) and s1.image.shape == (H, W, 3)
    assert np.abs(s0.image.astype(int) - _image(3)).mean() < 60
    assert not s1.anomaly.any() and not s1.void.any()
    assert s0.instances.dtype == np.int32 and sorted(np.unique(s0.instances)) == [0, 7, 300]
    assert s0.instance_path == folders_root / "labels_instances" / "0.png"
    assert s1.instances is None and s2.instances is None


def test_value_overrides(folders_root):
    ds = open_dataset(folders_root, anomaly_values=[1, 255], void_values=[])
    s0 = ds[0]
    assert s0.anomaly.sum() == 32 and not s0.void.any()
    ds = open_dataset(folders_root, anomaly_values=255, void_values=(0,))
    s0 = ds[0]
    assert s0.anomaly.sum() == 20 and s0.void.sum() == H * W - 32
    with pytest.raises(ValueError, match="both anomaly and void"):
        open_dataset(folders_root, anomaly_values=1, void_values=[1, 255])
    with pytest.raises(ValueError, match="at least one anomaly"):
        open_dataset(folders_root, anomaly_values=[])
    with pytest.raises(ValueError, match="integers"):
        open_dataset(folders_root, anomaly_values=[1.5])


def test_layout_forced_and_limit(folders_root):
    ds = open_dataset(folders_root, layout="folders", limit=2)
    assert ds.names == ["0", "1"] and len(list(ds)) == 2
    assert open_dataset(folders_root, limit=10).names == ["0", "1", "2"]
    with pytest.raises(ValueError, match="limit"):
        open_dataset(folders_root, limit=-1)


def test_unknown_and_undetectable_layouts(tmp_path, ra_root):
    with pytest.raises(DatasetError, match="unknown dataset layout 'cityscapes'"):
        open_dataset(ra_root, layout="cityscapes")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"frames/<name>\.labels.*images/ \+ labels_masks/.*found neither"):
        open_dataset(empty)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no images/ folder"):
        open_dataset(ra_root, layout="folders")
    with pytest.raises(DatasetError, match="no frames/ folder"):
        open_dataset(empty, layout="roadanomaly")


def test_both_layouts_present_is_ambiguous(ra_root):
    (ra_root / "images").mkdir()
    (ra_root / "labels_masks").mkdir()
    with pytest.raises(DatasetError, match="matches both layouts"):
        open_dataset(ra_root)
    assert open_dataset(ra_root, layout="roadanomaly").names == ["a", "b"]


def test_missing_label_errors_or_is_skipped_and_counted(ra_root, folders_root):
    _encoded(ra_root / "frames" / "c.jpg", _image(6), ".jpg")  # no c.labels at all
    with pytest.raises(DatasetError, match=r"1 image\(s\) without a label.*c\.jpg"):
        open_dataset(ra_root)
    ds = open_dataset(ra_root, on_missing="skip")
    assert ds.names == ["a", "b"] and ds.skipped["missing_label"] == ["c.jpg"]
    assert ds.describe()["skipped"] == {"missing_label": 1, "label_without_image": 1}
    (ra_root / "frames" / "d.labels").mkdir()  # a labels folder without labels_semantic.png
    _encoded(ra_root / "frames" / "d.jpg", _image(7), ".jpg")
    assert open_dataset(ra_root, on_missing="skip").skipped["missing_label"] == ["c.jpg", "d.jpg"]

    _encoded(folders_root / "images" / "3.webp", _image(8), ".webp")
    with pytest.raises(DatasetError, match="3.webp"):
        open_dataset(folders_root)
    ds = open_dataset(folders_root, on_missing="skip")
    assert ds.names == ["0", "1", "2"] and ds.skipped == {"missing_label": ["3.webp"]}
    with pytest.raises(ValueError, match="on_missing"):
        open_dataset(folders_root, on_missing="ignore")


def test_size_mismatch_names_the_files(folders_root):
    _encoded(folders_root / "images" / "1.webp", _image(4, h=H, w=W + 4), ".webp")
    ds = open_dataset(folders_root)
    it = iter(ds)
    next(it)
    with pytest.raises(DatasetError, match=r"size mismatch: image .*1\.webp is 20x12 but its label .*1\.png is 16x12"):
        next(it)
    lazy = open_dataset(folders_root, load_images=False)
    s1 = lazy[1]
    assert s1.anomaly.shape == (H, W)  # labels load without touching the image
    with pytest.raises(DatasetError, match=r"1\.webp"):
        s1.image
    _png(folders_root / "labels_instances" / "2.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError, match=r"instance label .*2\.png is 16x13"):
        open_dataset(folders_root)[2]  # instance files are found when the dataset is opened


def test_undecodable_and_ambiguous_files(folders_root):
    (folders_root / "images" / "2.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"2\.jpg"):
        open_dataset(folders_root)[2]
    _encoded(folders_root / "images" / "0.jpg", _image(9), ".jpg")
    with pytest.raises(DatasetError, match="ambiguous names"):
        open_dataset(folders_root)


def test_colour_labels_are_accepted_only_when_grey(folders_root):
    lab = _semantic("folders")
    _png(folders_root / "labels_masks" / "1.png", np.dstack([lab, lab, lab]))
    s1 = open_dataset(folders_root)[1]
    assert s1.label.shape == (H, W) and np.array_equal(s1.void, lab == 255)
    colour = np.dstack([lab, lab, np.zeros_like(lab)])
    _png(folders_root / "labels_masks" / "1.png", colour)
    with pytest.raises(DatasetError, match=r"1\.png has 3 differing colour channels"):
        open_dataset(folders_root)[1]


@settings(max_examples=25, deadline=None)
@given(label=hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)),
                        elements=st.sampled_from([0, 1, 2, 3, 254, 255])),
       anomaly=st.sets(st.sampled_from([1, 2, 3]), min_size=1), void=st.sets(st.sampled_from([254, 255])))
def test_masks_are_the_label_values_property(label, anomaly, void):
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        _png(root / "images" / "x.png", np.zeros(label.shape + (3,), np.uint8))
        _png(root / "labels_masks" / "x.png", label)
        s = open_dataset(root, anomaly_values=sorted(anomaly), void_values=sorted(void))[0]
        assert np.array_equal(s.label, label)
        assert np.array_equal(s.anomaly, np.isin(label, list(anomaly)))
        assert np.array_equal(s.void, np.isin(label, list(void)))
        assert not (s.anomaly & s.void).any()


def test_defaults_table():
    assert DEFAULTS == {"roadanomaly": ((2,), ()), "folders": ((1,), (255,))}


# ------------------------------------------------------------------------------------------- real data

def test_real_roadanomaly(shared_data):
    ds = open_dataset(shared_data / "roadanomaly")
    assert (ds.layout, ds.name, len(ds), ds.n_with_instances, ds.skipped) == ("roadanomaly", "roadanomaly", 60, 46, {})
    assert ds.names == sorted(ds.names)
    fractions, n_objects = [], 0
    for s in ds:
        assert s.image.shape == (720, 1280, 3) and s.label.shape == (720, 1280)
        assert set(np.unique(s.label).tolist()) <= {0, 2}
        assert not s.void.any()
        fractions.append(s.anomaly.mean())
        if s.instances is not None:
            ids = np.unique(s.instances)
            assert ids[0] == 0 and list(ids[1:]) == list(range(1, len(ids)))  # 1..K, no gaps
            assert np.array_equal(s.instances > 0, s.anomaly)  # instances cover exactly the anomaly pixels
            n_objects += len(ids) - 1
    assert n_objects == 201
    assert min(fractions) > 0.003 and max(fractions) < 0.5
    assert 0.05 < np.median(fractions) < 0.08


def test_real_smiyc_roadanomaly21_val(shared_data):
    root = shared_data / "smiyc_roadanomaly21_val"
    assert (root / "images" / "0.png").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG bytes behind .png
    ds = open_dataset(root)
    assert (ds.layout, len(ds), ds.names, ds.n_with_instances) == ("folders", 10, [str(i) for i in range(10)], 0)
    for s in ds:
        assert s.image.shape == (720, 1280, 3)
        assert set(np.unique(s.label).tolist()) == {0, 1, 255}
        assert s.void.any() and s.anomaly.any() and not (s.void & s.anomaly).any()
        assert 0.004 < s.void.mean() < 0.1 and 0.01 < s.anomaly.mean() < 0.4
