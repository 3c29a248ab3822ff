"""Camera mask quality per kind and category (s2m_ros.eval.mask_quality): exact cases and properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2m_ros.eval.mask_quality import MaskQualityConfig, frame_ious, mask_quality

OBJECTS = [{"id": 1, "kind": "bolt", "category": "fod"}, {"id": 2, "kind": "cone", "category": "equipment"},
           {"id": 3, "kind": "tug", "category": "equipment"}]


def _scene():
    ids = np.zeros((20, 30), np.uint16)
    ids[2:6, 2:6] = 2  # cone: 16 px
    ids[10:20, 10:30] = 3  # tug: 200 px
    ids[0, 29] = 1  # bolt: 1 px, under min_pixels
    return ids


def _box(y0, y1, x0, x1, shape=(20, 30)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_exact_ious_assignment_and_false_masks():
    ids = _scene()
    cone = _box(2, 6, 2, 4)  # half the cone: IoU 8 / 16
    tug = _box(10, 20, 10, 25)  # 150 of the tug's 200 px: IoU 0.75
    paint = _box(7, 9, 0, 30)  # on no object
    iou, off = frame_ious(ids, [2, 3], [cone, tug, paint])
    np.testing.assert_allclose(iou, [[0.5, 0, 0], [0, 0.75, 0]])
    assert off.tolist() == [0, 0, 60]
    q = mask_quality([(ids, [cone, tug, paint])], OBJECTS)
    assert q["skipped_small"] == 1 and q["masks"] == 3 and q["false_masks"] == 1 and q["false_masks_per_frame"] == 1.0
    assert q["by_kind"]["cone"] == {"object_frames": 1, "mean_iou": 0.5, "recall": 1.0, "objects": 1,
                                    "objects_seen": 1}
    assert q["by_kind"]["tug"]["mean_iou"] == 0.75 and "bolt" not in q["by_kind"]
    assert q["by_category"]["equipment"] == {"object_frames": 2, "mean_iou": 0.625, "recall": 1.0, "objects": 2,
                                             "objects_seen": 2}
    assert q["all"]["object_frames"] == 2
    # a stricter hit and a smaller minimum size
    q2 = mask_quality([(ids, [cone, tug, paint])], OBJECTS, MaskQualityConfig(iou_hit=0.6, min_pixels=1))
    assert q2["by_kind"]["cone"]["recall"] == 0.0 and q2["by_kind"]["tug"]["recall"] == 1.0
    assert q2["by_kind"]["bolt"] == {"object_frames": 1, "mean_iou": 0.0, "recall": 0.0, "objects": 1,
                                     "objects_seen": 0}


def test_one_mask_explains_one_object():
    ids = _scene()
    both = _box(2, 20, 2, 30)  # covers cone and tug: counted for the tug (its IoU is higher), not twice
    q = mask_quality([(ids, [both])], OBJECTS)
    tug_iou = 200 / both.sum()
    assert q["by_kind"]["tug"]["mean_iou"] == round(tug_iou, 4) and q["by_kind"]["cone"]["mean_iou"] == 0.0
    assert q["false_masks"] == 1  # most of its pixels lie on no object


def test_objects_seen_over_frames_and_no_frames():
    ids = _scene()
    good, miss = _box(2, 6, 2, 6), _box(0, 1, 0, 1)
    q = mask_quality([(ids, [good]), (ids, [miss]), (ids, [])], OBJECTS)
    cone = q["by_kind"]["cone"]
    assert cone["object_frames"] == 3 and cone["recall"] == round(1 / 3, 4) and cone["objects_seen"] == 1
    assert q["by_kind"]["tug"]["objects_seen"] == 0 and q["frames"] == 3
    empty = mask_quality([], OBJECTS)
    assert empty["frames"] == 0 and empty["all"]["mean_iou"] is None and empty["false_masks_per_frame"] is None


def test_wrong_mask_size_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        mask_quality([(_scene(), [np.zeros((10, 10), bool)])], OBJECTS)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.integers(1, 6))
def test_truth_masks_score_one_and_no_masks_zero(seed, n):
    rng = np.random.default_rng(seed)
    ids = np.zeros((40, 50), np.uint16)
    objects = []
    for k in range(1, n + 1):
        y, x = rng.integers(0, 36), rng.integers(0, 46)
        ids[y:y + 4, x:x + 4] = k  # later objects occlude earlier ones
        objects.append({"id": k, "kind": "k%d" % (k % 2), "category": "c"})
    present = [k for k in range(1, n + 1) if np.count_nonzero(ids == k) >= 8]
    perfect = mask_quality([(ids, [ids == k for k in present])], objects)
    if present:
        assert perfect["all"]["recall"] == 1.0 and perfect["all"]["mean_iou"] == 1.0
    assert perfect["false_masks"] == 0 and perfect["all"]["object_frames"] == len(present)
    none = mask_quality([(ids, [])], objects)
    assert none["all"]["object_frames"] == len(present)
    if present:
        assert none["all"]["recall"] == 0.0 and none["all"]["mean_iou"] == 0.0
