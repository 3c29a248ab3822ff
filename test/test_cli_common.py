"""The s2m command dispatcher, CLI helpers and the overlay renderer."""
import json
import math
import subprocess

import cv2
import numpy as np
import pytest

from s2m_ros.cli import main as cli_main
from s2m_ros.files import iter_image_paths, read_image, write_json
from s2m_ros.cli.segment import set_dotted
from s2m_ros.segmentation.overlay import draw_overlay, score_heatmap
from s2m_ros.segmentation.prompts import Prompt
from s2m_ros.types import InstanceMask


def test_dispatcher_help_and_unknown(capsys):
    assert cli_main.main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli_main.COMMANDS)
    assert cli_main.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_installed_s2m_command_runs():
    proc = subprocess.run(["s2m", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "fit-sml" in proc.stdout
    proc = subprocess.run(["s2m", "export", "nosuchmodel"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown model" in proc.stderr


def test_images_are_found_by_content_not_extension(tmp_path):
    img = np.full((5, 7, 3), 9, np.uint8)
    ok, jpg = cv2.imencode(".jpg", img)
    (tmp_path / "a.png").write_bytes(jpg.tobytes())  # JPEG bytes behind a .png name
    cv2.imwrite(str(tmp_path / "b.webp"), img)
    (tmp_path / "c.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(jpg.tobytes())
    paths = iter_image_paths([tmp_path])
    assert [p.name for p in paths] == ["a.png", "b.webp", "c.txt"]
    assert read_image(paths[0]).shape == (5, 7, 3) and read_image(paths[1]).shape == (5, 7, 3)
    with pytest.raises(ValueError, match="c.txt"):
        read_image(paths[2])
    assert [p.name for p in iter_image_paths([tmp_path], limit=1)] == ["a.png"]
    with pytest.raises(FileNotFoundError):
        iter_image_paths([tmp_path / "missing"])


def test_write_json_nan_is_null(tmp_path):
    write_json(tmp_path / "x" / "o.json", {"a": math.nan, "b": np.float32(1.5), "c": np.arange(2), "d": (np.int64(3),)})
    assert json.loads((tmp_path / "x" / "o.json").read_text()) == {"a": None, "b": 1.5, "c": [0, 1], "d": [3]}


def test_set_dotted():
    d = set_dotted({}, "selection.min_contrast=4.5")
    set_dotted(d, "profile=espnet+grabcut")
    set_dotted(d, "prompts.max_prompts=3")
    assert d == {"selection": {"min_contrast": 4.5}, "profile": "espnet+grabcut", "prompts": {"max_prompts": 3}}
    with pytest.raises(ValueError, match="key=value"):
        set_dotted(d, "novalue")


def test_overlay_draws_masks_only_where_they_are():
    img = np.full((40, 60, 3), 100, np.uint8)
    full = np.zeros((40, 60), bool)
    full[10:20, 30:45] = True
    m = InstanceMask.from_full_mask(1, full, anomaly_score=0.8)
    out = draw_overlay(img, [m], prompts=[Prompt(box=(0, 0, 5, 5), point=(2, 2))])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out[15, 37], img[15, 37])  # tinted inside
    assert np.array_equal(out[35, 5], img[35, 5])  # untouched far away
    assert np.array_equal(img, np.full((40, 60, 3), 100, np.uint8))  # input not modified
    heat = score_heatmap(np.array([[0, 1], [np.nan, 2]], np.float32), 4, 4)
    assert heat.shape == (4, 4, 3)
    assert np.array_equal(score_heatmap(np.full((3, 3), np.nan), 3, 3), np.zeros((3, 3, 3), np.uint8))
