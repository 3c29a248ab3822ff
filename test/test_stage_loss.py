"""Where the camera pipeline loses each labelled instance (s2m_ros.eval.stage_loss): exact cases, and
`s2m eval` reporting it on a dataset with instance labels."""
import json

import cv2
import numpy as np
import pytest

from s2m_ros.eval.stage_loss import instance_stages, summarise
from s2m_ros.segmentation.prompts import Prompt
from s2m_ros.segmentation.segmenter import Segment
from s2m_ros.segmentation.selection import Decision

H, W = 40, 60


def _gt(x, y, w, h):
    m = np.zeros((H, W), bool)
    m[y:y + h, x:x + w] = True
    return m


def _seg(i, x, y, w, h):
    return Segment(prompt_index=i, roi=(x, y, w, h), mask=np.ones((h, w), bool))


def test_each_stage_exactly():
    a, b, c, d, e = _gt(2, 2, 10, 10), _gt(20, 2, 10, 10), _gt(40, 2, 10, 10), _gt(2, 25, 10, 10), _gt(40, 25, 10, 10)
    prompts = [Prompt(box=(2, 2, 10, 10), point=(6, 6)), Prompt(box=(20, 2, 10, 10), point=(25, 6)),
               Prompt(box=(0, 0, 1, 1), point=(45, 6)),  # its point is on c, its box is not
               Prompt(box=(40, 25, 10, 9), point=(0, 39))]  # box IoU 0.9 with e, point off it
    segments = [_seg(0, 2, 2, 10, 10), _seg(1, 20, 2, 10, 8), _seg(2, 40, 2, 3, 3), _seg(3, 40, 25, 2, 2)]
    decisions = [Decision(0, "kept", {}), Decision(1, "low_contrast", {}), Decision(2, "too_small", {}),
                 Decision(3, "too_small", {})]
    kept = [segments[0]]
    labels = instance_stages([a, b, c, d, e], prompts, segments, decisions, kept)
    # a kept; b's segment (IoU 0.8) rejected for low contrast; c prompted but its segment has IoU 0.09;
    # d: nothing on it; e: prompted by box only, segment too small
    assert labels == ["kept", "rejected:low_contrast", "poor_segment", "no_prompt", "poor_segment"]
    assert summarise(labels) == {"instances": 5, "kept": 1, "rejected": 1, "poor_segment": 2, "no_prompt": 1,
                                 "rejected_by": {"low_contrast": 1}}
    # a stricter hit: b's 0.8 is not enough, and it was prompted
    assert instance_stages([b], prompts, segments, decisions, kept, iou_hit=0.85) == ["poor_segment"]


def test_kept_beats_a_rejected_duplicate_and_masks_may_leave_the_image():
    g = _gt(50, 30, 10, 10)
    segments = [_seg(0, 50, 30, 12, 12), _seg(1, 49, 29, 11, 11)]  # the first leaves the 60 x 40 image
    decisions = [Decision(0, "duplicate", {}), Decision(1, "kept", {})]  # its in-image part is g: IoU 1
    assert instance_stages([g], [], segments, decisions, [segments[1]]) == ["kept"]
    assert instance_stages([g], [], segments, decisions, []) == ["rejected:duplicate"]
    assert instance_stages([np.zeros((H, W), bool)], [], [], [], []) == ["no_prompt"]
    with pytest.raises(ValueError, match="decisions"):
        instance_stages([g], [], segments, decisions[:1], [])


def test_eval_reports_the_stages(tmp_path, capsys):
    from s2m_ros.cli import eval as eval_cli

    # a RoadAnomaly-layout folder: a dark square object on a grey textured road, two instances labelled
    root = tmp_path / "ra"
    frames = root / "frames"
    rng = np.random.default_rng(0)
    for k in range(2):
        img = np.clip(rng.normal(128, 6, (120, 160, 3)), 0, 255).astype(np.uint8)
        label = np.zeros((120, 160), np.uint8)
        inst = np.zeros((120, 160), np.uint16)
        for j, (x, y) in enumerate([(30, 60), (100, 70)], start=1):
            img[y:y + 16, x:x + 16] = (20, 30, 200) if j == 1 else (40, 40, 40)
            label[y:y + 16, x:x + 16] = 2
            inst[y:y + 16, x:x + 16] = j
        name = "img%d" % k
        frames.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(frames / (name + ".jpg")), img)
        lab = frames / (name + ".labels")
        lab.mkdir()
        cv2.imwrite(str(lab / "labels_semantic.png"), label)
        cv2.imwrite(str(lab / "labels_instance.png"), inst)
    (root / "frame_list.json").write_text(json.dumps(["img0.jpg", "img1.jpg"]))
    out = tmp_path / "r.json"
    assert eval_cli.main(["--dataset", str(root), "--mode", "s2m", "--json", str(out)]) == 0
    st = json.loads(out.read_text())["stages"]
    assert st["instances"] == 4
    assert st["kept"] + st["rejected"] + st["poor_segment"] + st["no_prompt"] == 4
    assert sum(st["rejected_by"].values()) == st["rejected"]
    r = json.loads(out.read_text())
    assert st["kept"] == round(r["instance"]["recall"] * 4)  # "kept" is instance recall's numerator
    assert "instances 4: kept %d" % st["kept"] in capsys.readouterr().out
