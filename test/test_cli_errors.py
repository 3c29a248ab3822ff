"""Issue 19: no `s2m` command prints a traceback for a user error, and a bad item never ends a batch.

Every case runs the installed command as a subprocess, as a user would:

- user errors (bad argument, missing input, a file where a folder is expected and vice versa, output
  under a regular file or in a folder that cannot be written, /dev/full, broken YAML for every YAML
  option, bad --set values, unknown profile): exit 2, ONE line on stderr ``s2m <command>: error: ...``,
  no traceback;
- bad items (a 1x1 image, a 0-byte file, a truncated JPEG, a text file among images; a size-mismatched
  label and an undecodable image in a dataset; a truncated message in a bag): exit 0, the item is
  skipped and reported on stderr, and the outputs (results.json, the eval JSON, the output bag and its
  summary) are still written, listing it under "skipped".
"""
import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

import image_bombs

T0 = 1_700_000_000 * 10**9


def run(args, cwd, timeout=120):
    cmd = args if args[0] == sys.executable else ["s2m"] + list(args)
    return subprocess.run([str(a) for a in cmd], capture_output=True, text=True, timeout=timeout, cwd=str(cwd),
                          env=dict(os.environ, S2M_DEBUG=""))


def good_image(width=160, height=90, seed=1):
    from s2m_ros.sim.still import render_apron

    img, _ = render_apron(width, height, seed=seed, objects=["suitcase"], object_z=(5.0, 8.0))
    return img


def small_bag(path, storage="sqlite3", frames=3):
    from s2m_ros.bags.storage import write_scenario_bag
    from s2m_ros.sim.scenario import ScenarioConfig, make_scenario

    scenario = make_scenario(ScenarioConfig(seed=0, frames=frames, width=160, height=90, lidar_beams=8,
                                            lidar_azimuth_steps=128))
    write_scenario_bag(scenario, path, storage=storage, show_progress=False)
    return path


def write_dataset(root, bad=True):
    """folders layout: 3 good samples, plus (bad=True) one size-mismatched label and one undecodable image."""
    for d in ("images", "labels_masks"):
        (root / d).mkdir(parents=True)
    for k in range(3):
        img = good_image(seed=10 + k)
        label = np.zeros(img.shape[:2], np.uint8)
        label[40:60, 60:90] = 1
        cv2.imwrite(str(root / "images" / ("f%d.png" % k)), img)
        cv2.imwrite(str(root / "labels_masks" / ("f%d.png" % k)), label)
    if bad:
        cv2.imwrite(str(root / "images" / "g_mismatch.png"), good_image(seed=20))
        cv2.imwrite(str(root / "labels_masks" / "g_mismatch.png"), np.zeros((20, 30), np.uint8))
        (root / "images" / "h_garbage.png").write_bytes(b"\x89PNG not really")
        cv2.imwrite(str(root / "labels_masks" / "h_garbage.png"), np.zeros((90, 160), np.uint8))
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace of good and bad inputs (paths relative to it are used as the commands' cwd)."""
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "afile").write_text("a regular file\n")
    (root / "broken.yaml").write_text("pipeline: {profile: [\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "noparams.yaml").write_text("some_node:\n  other: 1\n")
    (root / "random.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    (root / "empty_dir").mkdir()
    imgs = root / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "good.jpg"), good_image())
    (root / "notes.txt").write_text("not an image\n")
    write_dataset(root / "dataset", bad=False)
    small_bag(root / "bag")
    return root


# (case id, argv, prog of the error line); paths are relative to the workspace
USER_ERRORS = [
    # segment
    ("segment-missing-input", ["segment", "nope", "--out", "o"], "s2m segment"),
    ("segment-out-is-a-file", ["segment", "imgs", "--out", "afile"], "s2m segment"),
    ("segment-out-under-a-file", ["segment", "imgs", "--out", "afile/sub"], "s2m segment"),
    ("segment-out-not-writable", ["segment", "imgs", "--out", "/proc/s2m_out"], "s2m segment"),
    ("segment-set-not-an-int", ["segment", "imgs", "--out", "o", "--set", "prompts.max_prompts=many"], "s2m segment"),
    ("segment-set-no-value", ["segment", "imgs", "--out", "o", "--set", "novalue"], "s2m segment"),
    ("segment-set-bad-yaml", ["segment", "imgs", "--out", "o", "--set", "selection.min_contrast=["], "s2m segment"),
    ("segment-set-unknown-key", ["segment", "imgs", "--out", "o", "--set", "nosuch.key=1"], "s2m segment"),
    ("segment-set-under-a-value", ["segment", "imgs", "--out", "o", "--set", "profile.x=1"], "s2m segment"),
    ("segment-config-broken-yaml", ["segment", "imgs", "--out", "o", "--config", "broken.yaml"], "s2m segment"),
    ("segment-config-list", ["segment", "imgs", "--out", "o", "--config", "list.yaml"], "s2m segment"),
    ("segment-config-binary", ["segment", "imgs", "--out", "o", "--config", "binary.yaml"], "s2m segment"),
    ("segment-config-missing", ["segment", "imgs", "--out", "o", "--config", "nope.yaml"], "s2m segment"),
    ("segment-config-is-a-folder", ["segment", "imgs", "--out", "o", "--config", "imgs"], "s2m segment"),
    ("segment-unknown-profile", ["segment", "imgs", "--out", "o", "--profile", "nope+grabcut"], "s2m segment"),
    ("segment-corrupt-model", ["segment", "imgs", "--out", "o", "--profile", "espnet+grabcut", "--scorer-model",
                               "random.bin"], "s2m segment"),
    ("segment-negative-limit", ["segment", "imgs", "--out", "o", "--limit", "-1"], "s2m segment"),
    ("segment-bad-int", ["segment", "imgs", "--out", "o", "--threads", "x"], "s2m segment"),
    ("segment-no-out", ["segment", "imgs"], "s2m segment"),
    # eval
    ("eval-missing-dataset", ["eval", "--dataset", "nope"], "s2m eval"),
    ("eval-dataset-is-a-file", ["eval", "--dataset", "afile"], "s2m eval"),
    ("eval-dataset-no-layout", ["eval", "--dataset", "empty_dir"], "s2m eval"),
    ("eval-json-dev-full", ["eval", "--dataset", "dataset", "--json", "/dev/full"], "s2m eval"),
    ("eval-json-under-a-file", ["eval", "--dataset", "dataset", "--json", "afile/r.json"], "s2m eval"),
    ("eval-json-is-a-folder", ["eval", "--dataset", "dataset", "--json", "imgs"], "s2m eval"),
    ("eval-out-is-a-file", ["eval", "--dataset", "dataset", "--out", "afile"], "s2m eval"),
    ("eval-config-broken-yaml", ["eval", "--dataset", "dataset", "--config", "broken.yaml"], "s2m eval"),
    ("eval-set-bad", ["eval", "--dataset", "dataset", "--set", "prompts.max_prompts=many"], "s2m eval"),
    ("eval-unknown-profile", ["eval", "--dataset", "dataset", "--profile", "nope"], "s2m eval"),
    ("eval-negative-limit", ["eval", "--dataset", "dataset", "--limit", "-2"], "s2m eval"),
    ("eval-bad-mode", ["eval", "--dataset", "dataset", "--mode", "nope"], "s2m eval"),
    # replay
    ("replay-missing-bag", ["replay", "nope", "out"], "s2m replay"),
    ("replay-bag-is-a-file", ["replay", "afile", "out"], "s2m replay"),
    ("replay-bag-is-a-plain-folder", ["replay", "imgs", "out"], "s2m replay"),
    ("replay-out-under-a-file", ["replay", "bag", "afile/out"], "s2m replay"),
    ("replay-out-not-writable", ["replay", "bag", "/proc/s2m_out"], "s2m replay"),
    ("replay-out-exists", ["replay", "bag", "bag"], "s2m replay"),
    ("replay-out-is-the-input-forced", ["replay", "bag", "bag", "--force"], "s2m replay"),
    ("replay-out-inside-the-input", ["replay", "bag", "bag/inner"], "s2m replay"),
    ("replay-summary-dev-full", ["replay", "bag", "out_full", "--force", "--no-progress", "--summary", "/dev/full"],
     "s2m replay"),
    ("replay-summary-under-a-file", ["replay", "bag", "out", "--summary", "afile/s.json"], "s2m replay"),
    ("replay-summary-is-a-folder", ["replay", "bag", "out", "--summary", "imgs"], "s2m replay"),
    ("replay-fusion-params-broken", ["replay", "bag", "out", "--fusion-params", "broken.yaml"], "s2m replay"),
    ("replay-fusion-params-binary", ["replay", "bag", "out", "--fusion-params", "binary.yaml"], "s2m replay"),
    ("replay-fusion-params-list", ["replay", "bag", "out", "--fusion-params", "list.yaml"], "s2m replay"),
    ("replay-fusion-params-no-section", ["replay", "bag", "out", "--fusion-params", "noparams.yaml"], "s2m replay"),
    ("replay-fusion-params-missing", ["replay", "bag", "out", "--fusion-params", "nope.yaml"], "s2m replay"),
    ("replay-fusion-params-folder", ["replay", "bag", "out", "--fusion-params", "imgs"], "s2m replay"),
    ("replay-fusion-set-range", ["replay", "bag", "out", "--fusion-set", "tracker.min_hits=1"], "s2m replay"),
    ("replay-fusion-set-bad", ["replay", "bag", "out", "--fusion-set", "tracker=["], "s2m replay"),
    ("replay-topics-bad-role", ["replay", "bag", "out", "--topics", "images=/x"], "s2m replay"),
    ("replay-topics-missing", ["replay", "bag", "out", "--topics", "image=/nope"], "s2m replay"),
    ("replay-config-broken-yaml", ["replay", "bag", "out", "--config", "broken.yaml"], "s2m replay"),
    ("replay-unknown-profile", ["replay", "bag", "out", "--profile", "nope"], "s2m replay"),
    # scenario
    ("scenario-out-under-a-file", ["scenario", "afile/bag", "--frames", "1"], "s2m scenario"),
    ("scenario-out-not-writable", ["scenario", "/proc/s2m_bag", "--frames", "1"], "s2m scenario"),
    ("scenario-out-is-not-a-bag", ["scenario", "afile", "--frames", "1", "--force"], "s2m scenario"),
    ("scenario-out-exists", ["scenario", "bag", "--frames", "1"], "s2m scenario"),
    ("scenario-no-frames", ["scenario", "new_bag", "--frames", "0"], "s2m scenario"),
    ("scenario-bad-int", ["scenario", "new_bag", "--frames", "many"], "s2m scenario"),
    # demo
    ("demo-out-is-a-file", ["demo", "--out", "afile"], "s2m demo"),
    ("demo-out-under-a-file", ["demo", "--out", "afile/demo"], "s2m demo"),
    ("demo-no-frames", ["demo", "--out", "demo", "--frames", "0"], "s2m demo"),
    ("demo-bad-camera", ["demo", "--out", "demo", "--camera", "big"], "s2m demo"),
    ("demo-unknown-profile", ["demo", "--out", "demo", "--profile", "nope"], "s2m demo"),
    # play (none of these starts ROS)
    ("play-missing-bag", ["play", "nope"], "s2m play"),
    ("play-bag-is-a-file", ["play", "afile"], "s2m play"),
    ("play-bag-is-a-plain-folder", ["play", "imgs"], "s2m play"),
    ("play-bad-rate", ["play", "bag", "--rate", "0"], "s2m play"),
    ("play-missing-topic", ["play", "bag", "--topics", "/nope"], "s2m play"),
    # bench
    ("bench-image-missing", ["bench", "--profiles", "surface+grabcut", "--image", "nope.jpg"], "s2m bench"),
    ("bench-image-not-an-image", ["bench", "--profiles", "surface+grabcut", "--image", "notes.txt"], "s2m bench"),
    ("bench-image-is-a-folder", ["bench", "--profiles", "surface+grabcut", "--image", "imgs"], "s2m bench"),
    ("bench-json-under-a-file", ["bench", "--profiles", "fusion", "--json", "afile/b.json"], "s2m bench"),
    ("bench-unknown-profile", ["bench", "--profiles", "nope"], "s2m bench"),
    ("bench-bad-size", ["bench", "--width", "0"], "s2m bench"),
    ("bench-no-frames", ["bench", "--frames", "0"], "s2m bench"),
    # fit-sml
    ("fit-sml-missing-model", ["fit-sml", "--model", "nope.onnx", "--images", "imgs", "--out", "s.json"], "s2m fit-sml"),
    ("fit-sml-corrupt-model", ["fit-sml", "--model", "random.bin", "--images", "imgs", "--out", "s.json"],
     "s2m fit-sml"),
    ("fit-sml-unknown-preset", ["fit-sml", "--model", "random.bin", "--preset", "nope", "--images", "imgs", "--out",
                                "s.json"], "s2m fit-sml"),
    ("fit-sml-out-under-a-file", ["fit-sml", "--model", "random.bin", "--images", "imgs", "--out", "afile/s.json"],
     "s2m fit-sml"),
    ("fit-sml-set-bad", ["fit-sml", "--model", "random.bin", "--images", "imgs", "--out", "s.json", "--set", "x=["],
     "s2m fit-sml"),
    # export (its tooling's own messages start with "error:")
    ("export-unknown-model", ["export", "nosuch"], "s2m export"),
    ("export-corrupt-weights", ["export", "espnet", "--weights", "random.bin", "--out", "m.onnx"], None),
    ("export-missing-weights", ["export", "espnet", "--weights", "nope.pth", "--out", "m.onnx"], None),
    # the dispatcher and the self-check
    ("unknown-command", ["frobnicate"], "s2m"),
    ("selfcheck-bad-timeout", [sys.executable, "-m", "s2m_ros.cli.selfcheck", "--timeout", "-1"], "s2m-selfcheck"),
]


def assert_user_error(proc, prog):
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    if prog is not None:
        assert lines[0].startswith(prog + ": error: "), lines[0]
    else:
        assert "error: " in lines[0], lines[0]


@pytest.mark.parametrize("args, prog", [pytest.param(a, p, id=i) for i, a, p in USER_ERRORS])
def test_user_error_is_one_line_and_exit_2(ws, args, prog):
    if args[0] == "export":
        pytest.importorskip("torch", reason="s2m export needs torch")
    assert_user_error(run(args, ws), prog)


def test_read_only_output_folder_is_a_user_error(ws, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder anyway (the /proc cases cover an unwritable output)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for args, prog in ((["segment", "imgs", "--out", ro / "o"], "s2m segment"),
                           (["replay", "bag", ro / "out"], "s2m replay"),
                           (["eval", "--dataset", "dataset", "--json", ro / "r.json"], "s2m eval"),
                           (["scenario", ro / "bag", "--frames", "1"], "s2m scenario")):
            assert_user_error(run(args, ws), prog)
    finally:
        ro.chmod(0o755)


def test_debug_env_shows_the_traceback_of_a_user_error(ws):
    proc = subprocess.run(["s2m", "segment", "nope", "--out", "o"], capture_output=True, text=True, timeout=60,
                          cwd=str(ws), env=dict(os.environ, S2M_DEBUG="1"))
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("s2m segment: error: no such file or folder")


# --------------------------------------------------------------------------- bad items


def test_segment_skips_bad_images_and_writes_the_others(ws, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    img = good_image()
    ok, jpg = cv2.imencode(".jpg", img)
    cv2.imwrite(str(d / "a_good.jpg"), img)
    cv2.imwrite(str(d / "b_1x1.png"), np.zeros((1, 1, 3), np.uint8))
    (d / "c_empty.jpg").write_bytes(b"")
    (d / "d_truncated.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 3])
    (d / "e_text.png").write_text("hello, not an image")
    cv2.imwrite(str(d / "f_good.png"), good_image(seed=2))
    # decompression bombs (issue 19, 1): a 600-byte JPEG claiming 65000x65000, a 390 KB PNG of 20000x20000
    (d / "g_bomb.jpg").write_bytes(image_bombs.jpeg_claiming(65000, 65000))
    (d / "h_bomb.png").write_bytes(image_bombs.zeros_png())
    proc = run(["segment", d, "--out", tmp_path / "out"], ws)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [pathlib.Path(r["image"]).name for r in data["images"]] == ["a_good.jpg", "f_good.png"]
    skipped = {pathlib.Path(s["item"]).name: s for s in data["skipped"]}
    assert sorted(skipped) == ["b_1x1.png", "c_empty.jpg", "d_truncated.jpg", "e_text.png", "g_bomb.jpg",
                               "h_bomb.png"]
    assert all("more than the limit" in skipped[name]["error"] for name in ("g_bomb.jpg", "h_bomb.png"))
    assert all(s["reason"] == "bad_input" and s["error"] for s in skipped.values())
    assert data["n_skipped"] == 6 and data["n_images"] == 2
    assert (tmp_path / "out" / "a_good.overlay.jpg").is_file() and (tmp_path / "out" / "f_good.instances.png").is_file()
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("s2m segment: skipped 6 of 8 image(s) (bad_input 6)") and "results.json" in last
    # nothing usable at all: results.json is still written, exit 2 with one error line at the end
    only_bad = tmp_path / "bad_only"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"")
    proc = run(["segment", only_bad, "--out", tmp_path / "out2"], ws)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("s2m segment: error: none of the 1 input file(s)")
    assert json.loads((tmp_path / "out2" / "results.json").read_text())["skipped"][0]["reason"] == "bad_input"


def test_eval_skips_a_mismatched_label_and_an_undecodable_image(ws, tmp_path):
    ds = write_dataset(tmp_path / "ds")
    out = tmp_path / "r.json"
    proc = run(["eval", "--dataset", ds, "--json", out, "--out", tmp_path / "o"], ws)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    r = json.loads(out.read_text())
    assert r["n_images"] == 3
    skipped = {s["item"]: s for s in r["skipped"]}
    assert sorted(skipped) == ["g_mismatch", "h_garbage"]
    assert all(s["reason"] == "bad_sample" for s in skipped.values())
    assert "size mismatch" in skipped["g_mismatch"]["error"]
    assert len((tmp_path / "o" / "per_image.csv").read_text().splitlines()) == 4
    assert proc.stderr.splitlines()[-1].startswith("s2m eval: skipped 2 of 5 image(s) (bad_sample 2)")


def corrupt_copy(src, dst, storage, topic, index, keep=10):
    """``src`` copied message by message into ``dst`` (``storage``) with the ``index``-th message of ``topic``
    cut to its first ``keep`` bytes (the writer's write_raw stores bytes as given: works for MCAP too)."""
    from s2m_ros.bags.storage import BagReader, BagWriter

    seen = 0
    with BagReader(src) as r, BagWriter(dst, storage=storage) as w:
        for t, msgtype in r.topics().items():
            w.add_topic(t, msgtype, latched=r.latched(t))
        for t, stamp, data in r.messages(raw=True):
            if t == topic:
                if seen == index:
                    data = data[:keep]
                seen += 1
            w.write_raw(t, stamp, data)
    return dst


def truncate_in_sqlite(bag, topic, index, keep=10):
    """The brief's recipe: UPDATE messages SET data = substr(data, 1, keep) on one row of the .db3."""
    db = next(pathlib.Path(bag).glob("*.db3"))
    con = sqlite3.connect(str(db))
    try:
        row = con.execute("SELECT m.id FROM messages m JOIN topics t ON m.topic_id = t.id WHERE t.name = ? "
                          "ORDER BY m.timestamp LIMIT 1 OFFSET ?", (topic, index)).fetchone()
        con.execute("UPDATE messages SET data = substr(data, 1, ?) WHERE id = ?", (keep, row[0]))
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_replay_skips_a_truncated_message_and_writes_its_outputs(ws, tmp_path, storage):
    import shutil

    if storage == "sqlite3":
        bag = tmp_path / "bad_bag"
        shutil.copytree(ws / "bag", bag)
        truncate_in_sqlite(bag, "/camera/image_raw", 1)
    else:
        bag = corrupt_copy(ws / "bag", tmp_path / "bad_bag", "mcap", "/camera/image_raw", 1)
    summary = tmp_path / "s.json"
    proc = run(["replay", bag, tmp_path / "out", "--no-progress", "--summary", summary], ws)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    s = json.loads(summary.read_text())
    c = s["counters"]
    assert c["bad_messages"] == 1 and c["bad_input"] == 1 and c["images"] == 2 and c["images_processed"] == 2
    assert s["skipped_by_topic"] == {"/camera/image_raw": {"bad_messages": 1}} and s["n_skipped"] == 1
    assert s["skipped"][0]["topic"] == "/camera/image_raw" and "deserialise" in s["skipped"][0]["error"]
    from s2m_ros.bags.storage import BagReader

    with BagReader(tmp_path / "out") as r:
        assert r.counts()["/ood/masks"] == 2
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("s2m replay: skipped 1 of ") and "/camera/image_raw bad_messages 1" in last
