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


def test_error_policy_user_errors_one_line_bugs_keep_their_traceback(capsys, monkeypatch):
    """common.guarded: a user error is one line and exit 2, a bug keeps its traceback (exit 1), Ctrl-C is 130."""
    import errno

    import yaml

    from s2m_ros.cli import common
    from s2m_ros.eval.datasets import DatasetError

    monkeypatch.delenv("S2M_DEBUG", raising=False)

    def raising(exc):
        def body():
            raise exc
        return body

    for exc in (common.UsageError("bad --thing"), DatasetError("bad\n  dataset"), yaml.YAMLError("x: ["),
                OSError(errno.ENOSPC, "No space left on device", "/dev/full"), FileNotFoundError("no such file: x")):
        assert common.guarded("s2m t", raising(exc)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("s2m t: error: ") and "Traceback" not in err, err
    assert common.guarded("s2m t", raising(OSError(errno.ENOSPC, "No space left on device", "/dev/full"))) == 2
    assert capsys.readouterr().err == "s2m t: error: /dev/full: No space left on device\n"
    assert common.guarded("s2m t", raising(ValueError("a plain ValueError is not a user error"))) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" in err
    assert common.guarded("s2m t", raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "s2m t: interrupted\n"
    monkeypatch.setenv("S2M_DEBUG", "1")
    assert common.guarded("s2m t", raising(common.UsageError("shown with its traceback"))) == 2
    assert "Traceback" in capsys.readouterr().err


def test_argument_errors_are_one_line(capsys):
    from s2m_ros.cli.common import ArgumentParser

    ap = ArgumentParser(prog="s2m t")
    ap.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["--n", "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "s2m t: error: argument --n: invalid int value: 'x' (see s2m t --help)\n"


def test_output_and_input_checks(tmp_path):
    from s2m_ros.cli.common import UsageError, check_input, check_output_dir, check_output_file, load_yaml_file

    (tmp_path / "f").write_text("x")
    check_output_dir(tmp_path / "new" / "deeper")
    check_output_file(tmp_path / "new" / "o.json")
    for call, match in ((lambda: check_output_dir(tmp_path / "f"), "not a folder"),
                        (lambda: check_output_dir(tmp_path / "f" / "sub"), "is not a folder"),
                        (lambda: check_output_file(tmp_path), "is a folder"),
                        (lambda: check_output_file(tmp_path / "f" / "o.json"), "is not a folder"),
                        (lambda: check_input(tmp_path / "nope"), "does not exist"),
                        (lambda: check_input(tmp_path, "file"), "expected a file"),
                        (lambda: check_input(tmp_path / "f", "folder"), "not a folder"),
                        (lambda: load_yaml_file(tmp_path / "nope.yaml"), "cannot read"),
                        (lambda: load_yaml_file(tmp_path), "is a folder")):
        with pytest.raises(UsageError, match=match):
            call()
    (tmp_path / "b.yaml").write_bytes(b"a: [\n")
    with pytest.raises(UsageError, match=r"b.yaml is not valid YAML: .*line"):
        load_yaml_file(tmp_path / "b.yaml")


def test_set_dotted_refuses_malformed_assignments():
    from s2m_ros.cli.common import UsageError

    for bad, match in (("a=[", "not valid YAML"), ("=1", "dotted names"), ("a..b=1", "dotted names")):
        with pytest.raises(UsageError, match=match):
            set_dotted({}, bad)
    with pytest.raises(UsageError, match="already a value"):
        set_dotted({"a": 1}, "a.b=2")


def test_iter_images_reports_unreadable_files_and_goes_on(tmp_path):
    from s2m_ros.files import iter_images

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((4, 4, 3), np.uint8))
    skipped = []
    got = [p.name for p, _ in iter_images(iter_image_paths([tmp_path]), on_skip=lambda p, e: skipped.append(p.name))]
    assert got == ["a.png", "c.png"] and skipped == ["b.png"]
    with pytest.raises(OSError, match="not a regular file or folder"):
        iter_image_paths(["/dev/null"])
    with pytest.raises(ValueError, match="limit"):
        iter_image_paths([tmp_path], limit=-1)


def test_every_user_error_name_is_a_real_exception_class():
    """USER_ERRORS matches classes by module-qualified name: a renamed or moved class must fail here, not
    silently turn its errors into tracebacks."""
    import importlib

    from s2m_ros.cli.common import USER_ERRORS

    for name in sorted(USER_ERRORS):
        module, _, qualname = name.rpartition(".")
        if module.startswith("onnxruntime."):
            module = "onnxruntime.capi.onnxruntime_pybind11_state"
        cls = getattr(importlib.import_module(module), qualname)
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        assert "%s.%s" % (cls.__module__, cls.__qualname__) == name, name
