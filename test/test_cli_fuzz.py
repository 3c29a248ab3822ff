"""Issue 19: fuzzing the CLI's file and argument inputs.

Random argument lists built from each subcommand's known flags, with random values (numbers, text,
paths to existing, missing and bad files and folders, outputs that cannot be written) and random small
files (random bytes, truncated JPEGs, tiny images), run in-process through ``s2m_ros.cli.main.main``.
Whatever the draw: the exit code is 0 or 2, nothing but SystemExit escapes, and no traceback (nor an
"internal error") is printed. Bounded: small inputs, at most a few frames, 40 examples (S2M_FUZZ_EXAMPLES=N for a longer hunt).
"""
import contextlib
import io
import os
import shutil
import tempfile

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_cli_errors import corrupt_copy, good_image, small_bag, write_dataset

# --------------------------------------------------------------------------- values

SAFE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                    max_size=8)


def mostly(valid, invalid):
    """``valid`` four times in five (so most runs get past the argument parser), else ``invalid``."""
    return st.integers(0, 4).flatmap(lambda k: invalid if k == 0 else valid)


INTS = mostly(st.integers(-1, 4).map(str),
              st.sampled_from(["x", "", "1e3", "0x10", "2.5", "99999999999999999999"]) | SAFE_TEXT)
SMALL_INTS = mostly(st.integers(-1, 2).map(str), st.sampled_from(["x", "", "-5"]))
FLOATS = mostly(st.floats(-1, 5, allow_nan=False, allow_infinity=False).map(repr),
                st.sampled_from(["nan", "inf", "-inf", "x", "1e400", ""]))
IMAGE_FILES = ["good.jpg", "trunc.jpg", "tiny.png", "rand.bin", "empty.bin", "notes.txt"]
IMAGE_INPUTS = st.sampled_from(IMAGE_FILES + ["imgs", "imgs", "imgs", "nope", "afile/sub", "empty_dir", "/dev/null"])
IN_FILES = st.sampled_from(IMAGE_FILES + ["good.yaml", "broken.yaml", "list.yaml", "imgs", "nope.yaml", "afile",
                                          "/dev/null"])
YAMLS = st.sampled_from(["good.yaml", "good.yaml", "params.yaml", "params.yaml", "broken.yaml", "list.yaml",
                         "binary.yaml", "nope.yaml", "imgs", "rand.bin", "empty.bin"])
OUT_DIRS = mostly(st.sampled_from(["out", "out/deeper", "empty_dir"]),
                  st.sampled_from(["afile", "afile/sub", "imgs", "/dev/full", "/proc/s2m_fuzz"]))
OUT_FILES = mostly(st.sampled_from(["o.json", "sub/o.json", "/dev/null"]),
                   st.sampled_from(["afile", "afile/o.json", "imgs", "/dev/full", "/proc/s2m_fuzz.json"]))
PIPELINE_KEYS = ["profile", "threads", "refine", "score_method", "prompts.max_prompts", "selection.min_contrast",
                 "nosuch", "prompts", "backend", "a.b.c"]
FUSION_KEYS = ["tracker.min_hits", "time_tolerance_s", "cloud_buffer_size", "markers.lifetime_s", "nosuch", "tracker"]
FRAMES = mostly(st.sampled_from(["1", "2"]), st.sampled_from(["0", "-1", "x"]))
STORAGES = mostly(st.sampled_from(["mcap", "sqlite3"]), st.just("x"))
VALUES = st.one_of(SAFE_TEXT, INTS, FLOATS, st.sampled_from(["[1, 2]", "{a: 1}", "[", "null", "true", "'x'"]))


def assignments(keys):
    return st.one_of(st.tuples(st.sampled_from(keys), VALUES).map(lambda kv: "%s=%s" % kv), SAFE_TEXT)


PROFILES = mostly(st.sampled_from(["surface+grabcut", "espnet+grabcut", "surface+mobilesam"]),
                  st.sampled_from(["nope", "+", ""]) | SAFE_TEXT)
PIPELINE_FLAGS = {
    "--profile": PROFILES, "--config": YAMLS, "--scorer-model": IN_FILES,
    "--score": st.sampled_from(["msp", "maxlogit", "sml", "rba", "x"]), "--encoder": IN_FILES, "--decoder": IN_FILES,
    "--backend": st.sampled_from(["onnxruntime", "tensorrt", "x"]), "--threads": SMALL_INTS, "--refine": None,
    "--set": assignments(PIPELINE_KEYS),
}

# command -> (positional strategies, optional flags {flag: value strategy or None for a switch},
#             flags always given (to keep a run small))
COMMANDS = {
    "segment": ([st.lists(IMAGE_INPUTS, min_size=1, max_size=3)], dict(PIPELINE_FLAGS, **{"--limit": SMALL_INTS}),
                {"--out": OUT_DIRS}),
    "eval": ([], dict(PIPELINE_FLAGS, **{
        "--layout": st.sampled_from(["roadanomaly", "folders", "x"]), "--anomaly-value": INTS, "--void-value": INTS,
        "--skip-missing": None, "--mode": mostly(st.sampled_from(["threshold", "s2m", "s2m-refine"]), st.just("x")),
        "--threshold": FLOATS, "--min-pred-size": SMALL_INTS, "--min-gt-size": SMALL_INTS, "--json": OUT_FILES,
        "--out": OUT_DIRS, "--limit": SMALL_INTS, "--weights": IN_FILES}),
        {"--dataset": mostly(st.sampled_from(["dataset", "bad_dataset"]),
                             st.sampled_from(["afile", "nope", "imgs", "empty_dir"]))}),
    "replay": ([mostly(st.sampled_from(["bag", "bad_bag"]),
                       st.sampled_from(["afile", "nope", "imgs", "rand.db3", "rand.mcap", "empty_dir"])),
                mostly(st.sampled_from(["out", "out/deeper", "o.mcap"]),
                       st.sampled_from(["afile", "afile/sub", "/dev/full", "/proc/s2m_fuzz", "imgs", "bag"]))],
               dict(PIPELINE_FLAGS, **{
                   "--summary": OUT_FILES, "--fusion-params": YAMLS, "--fusion-set": assignments(FUSION_KEYS),
                   "--topics": st.sampled_from(["image=/x", "images=/x", "cloud=/lidar/points", "image=", "odom",
                                                "camera_info=/camera/camera_info"]),
                   "--extrinsics": st.sampled_from(["auto", "tf_static", "parameters", "x"]),
                   "--fixed-frame": st.sampled_from(["auto", "on", "off", "x"]),
                   "--storage": STORAGES, "--force": None, "--no-score-map": None,
                   "--no-overlay": None}), {"--no-progress": None}),
    "scenario": ([OUT_DIRS], {"--seed": SMALL_INTS, "--storage": STORAGES, "--force": None},
                 {"--frames": FRAMES}),
    "demo": ([], {"--out": OUT_DIRS, "--seed": SMALL_INTS, "--profile": PROFILES, "--overlays": SMALL_INTS,
                  "--storage": st.sampled_from(["mcap", "sqlite3"])},
             {"--frames": FRAMES,
              "--camera": mostly(st.just("64x64"), st.sampled_from(["1x1", "big", "64x", "x64", "64x5000"])),
              "--no-progress": None}),
    "fit-sml": ([], {"--preset": st.sampled_from(["espnet", "espnetv2", "none", "x"]), "--limit": SMALL_INTS,
                     "--threads": SMALL_INTS, "--set": assignments(["method", "mean", "x"])},
                {"--model": st.sampled_from(["rand.bin", "nope.onnx", "good.jpg", "imgs"]),
                 "--images": IMAGE_INPUTS, "--out": OUT_FILES}),
    "bench": ([], {"--models": st.sampled_from(["nope", "imgs", "afile"]), "--threads": SMALL_INTS,
                   "--backends": st.sampled_from(["onnxruntime", "x", "", "onnxruntime,tensorrt"]),
                   "--image": IN_FILES, "--seed": SMALL_INTS, "--json": OUT_FILES},
              {"--profiles": st.sampled_from(["surface+grabcut", "fusion", "nope", "", ",", "surface+grabcut,nope",
                                              "espnet+grabcut"]),
               "--width": mostly(st.sampled_from(["16", "64"]), st.sampled_from(["8", "x", "-64"])),
               "--height": mostly(st.sampled_from(["16", "48"]), st.sampled_from(["8", "x"])),
               "--frames": FRAMES, "--warmup": mostly(st.sampled_from(["0", "1"]), st.just("-1"))}),
    # never a playable bag: nothing here starts ROS
    "play": ([st.sampled_from(["afile", "nope", "imgs", "rand.mcap", "rand.db3", "empty_dir", "/dev/null"])],
             {"--rate": FLOATS, "--topics": SAFE_TEXT, "--clock": FLOATS, "--start-offset": FLOATS,
              "--qos-reliability": st.sampled_from(["reliable", "best_effort", "x"]), "--qos-depth": INTS,
              "--wait-subscribers": FLOATS, "--delay": FLOATS, "--ack-timeout": FLOATS, "--quiet": None}, {}),
}


def _value(draw, strategy):
    value = draw(strategy)
    return value if isinstance(value, list) else [value]


@st.composite
def command_lines(draw):
    name = draw(st.sampled_from(sorted(COMMANDS)))
    positionals, optional, always = COMMANDS[name]
    argv = [name]
    for strategy in positionals:
        argv += _value(draw, strategy)
    flags = dict(always)
    for flag in draw(st.lists(st.sampled_from(sorted(optional)), max_size=4, unique=True)):
        flags[flag] = optional[flag]
    for flag, strategy in flags.items():
        argv.append(flag)
        if strategy is not None:
            argv += _value(draw, strategy)
    if draw(st.integers(0, 14)) == 0:  # now and then something no parser knows
        argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(["--frobnicate", "-x", "--", "extra"])))
    return argv


# --------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """What every example's folder is made from: a small bag (and a copy with a truncated image
    message), a small dataset (and one with bad samples), a good JPEG."""
    root = tmp_path_factory.mktemp("fuzz_templates")
    small_bag(root / "bag")
    corrupt_copy(root / "bag", root / "bad_bag", "sqlite3", "/camera/image_raw", 0)
    write_dataset(root / "dataset", bad=False)
    write_dataset(root / "bad_dataset", bad=True)
    ok, jpg = cv2.imencode(".jpg", good_image())
    # the commands' modules, imported once here rather than in the first example
    from s2m_ros.cli import bench, demo, eval, fit_sml, play, replay, scenario, segment  # noqa: F401

    return {"root": root, "jpg": jpg.tobytes(), "work": tmp_path_factory.mktemp("fuzz_work")}


def make_files(folder, templates, random_bytes, cut, tiny_hw):
    jpg = templates["jpg"]
    (folder / "good.jpg").write_bytes(jpg)
    (folder / "trunc.jpg").write_bytes(jpg[: min(cut, len(jpg) - 1)])
    cv2.imwrite(str(folder / "tiny.png"), np.full(tiny_hw + (3,), 200, np.uint8))
    (folder / "rand.bin").write_bytes(random_bytes)
    (folder / "rand.db3").write_bytes(random_bytes)
    (folder / "rand.mcap").write_bytes(random_bytes)
    (folder / "empty.bin").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "afile").write_text("a regular file\n")
    (folder / "good.yaml").write_text("pipeline:\n  profile: surface+grabcut\n")
    (folder / "params.yaml").write_text("fusion_node:\n  ros__parameters:\n    tracker:\n      min_hits: 3\n")
    (folder / "broken.yaml").write_text("a: [\n")
    (folder / "list.yaml").write_text("- 1\n")
    (folder / "binary.yaml").write_bytes(random_bytes + b"\xff\xfe")
    (folder / "empty_dir").mkdir()
    (folder / "imgs").mkdir()
    for name in ("good.jpg", "trunc.jpg", "tiny.png", "rand.bin", "empty.bin"):
        shutil.copy(folder / name, folder / "imgs" / name)
    for name in ("bag", "bad_bag", "dataset", "bad_dataset"):
        shutil.copytree(templates["root"] / name, folder / name)


def run_in_process(argv):
    """(exit code, stderr) of ``s2m ARGV`` run here; any exception but SystemExit fails the test."""
    from s2m_ros.cli.main import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    if code is None:
        code = 0
    return code, err.getvalue()


@settings(max_examples=int(os.environ.get("S2M_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(argv=command_lines(), random_bytes=st.binary(max_size=200), cut=st.integers(0, 4000),
       tiny_hw=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_fuzzed_command_lines_exit_0_or_2_without_a_traceback(templates, argv, random_bytes, cut, tiny_hw):
    import pathlib

    folder = pathlib.Path(tempfile.mkdtemp(dir=str(templates["work"])))
    make_files(folder, templates, random_bytes, cut, tiny_hw)
    cwd = os.getcwd()
    os.chdir(str(folder))
    try:
        code, err = run_in_process(argv)
    finally:
        os.chdir(cwd)
        shutil.rmtree(str(folder), ignore_errors=True)
    if os.environ.get("S2M_FUZZ_LOG"):
        print("FUZZ", code, argv, err.strip().splitlines()[-1:] if err.strip() else "")
    assert "Traceback" not in err and "internal error" not in err, (argv, err[-3000:])
    assert code in (0, 2), (argv, code, err[-3000:])
