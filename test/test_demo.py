"""`s2m demo` (the README's main command) end to end on a short scenario: outputs, scores, reuse."""
import json

import cv2
import pytest

from s2m_ros.cli.main import main


def test_demo_writes_scores_mask_quality_pictures_and_reuses_its_scenario(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "6", "--overlays", "2", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "scenario: wrote" in text and "scores vs truth: recall" in text and "camera masks (per object-frame" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["scenario"]["frames"] == 6 and s["profile"] == "surface+grabcut"
    q = s["mask_quality"]
    assert q["frames"] == 6 and q["masks"] == s["replay"]["counters"]["masks"]
    assert set(q["by_kind"]) <= {"bolt", "cone", "suitcase", "toolbox", "chock", "hose", "tug", "pillar"}
    assert q["by_kind"] and all(0.0 <= v["mean_iou"] <= 1.0 for v in q["by_kind"].values())
    assert cv2.imread(str(out / "bev.png")) is not None
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["frame_000.jpg", "frame_005.jpg"]
    assert main(args) == 0  # same seed and length: the scenario bag is reused, the replay rewritten
    assert "scenario: reusing" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["mask_quality"] == q
    # another camera size is another scenario; a bad size is a clear error
    assert main(args + ["--camera", "320x180", "--frames", "3"]) == 0
    assert "scenario: wrote" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["replay"]["counters"]["images"] == 3
    with pytest.raises(SystemExit):
        main(args + ["--camera", "big"])
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err
