"""`s2m replay` regression on the synthetic apron scenario: planted objects confirmed where they are,
deterministic outputs, both storages, clear errors. (Scenario: 24 frames, seed 0, weight-free profile.)"""
import math

import numpy as np
import pytest

from s2m_ros.bags.storage import BagError, BagReader, read_truth, write_scenario_bag
from s2m_ros.sim.scenario import ScenarioConfig, make_scenario
from s2m_ros.eval.mask_quality import mask_quality
from s2m_ros.eval.scenario_eval import evaluate
from s2m_ros.bags.replay import ReplayConfig, Replayer, ReplayTopics

FRAMES = 24


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    scenario = make_scenario(ScenarioConfig(seed=0, frames=FRAMES))
    frames = list(scenario.frames())
    out = {}
    for storage in ("mcap", "sqlite3"):
        out[storage] = root / ("scenario_" + storage)
        write_scenario_bag(scenario, out[storage], storage=storage, frames=frames, show_progress=False)
    out["root"] = root
    out["instance_ids"] = {int(f.stamp_ns): f.instance_ids for f in frames}
    return out


@pytest.fixture(scope="module")
def first(bags):
    out = bags["root"] / "out1"
    return Replayer().run(bags["mcap"], out, show_progress=False, keep_overlays=[0, 5], keep_masks=True), out


def test_replay_confirms_planted_objects_where_they_are(bags, first):
    summary, out = first
    truth = read_truth(bags["mcap"])
    c = summary.counters
    assert c["images"] == c["images_processed"] == FRAMES and c["clouds"] == FRAMES
    assert c["fused"] >= FRAMES - 1  # the first cloud comes before its odometry pose: skipped_no_pose
    assert c.get("fusion_errors", 0) == 0 and c.get("processing_errors", 0) == 0
    assert summary.tracking_frame == "map" and summary.extrinsics == "tf_static"
    scores = evaluate(summary.frames, truth)
    found = {o["kind"] for o in scores["objects"] if o["found"]}
    # what the weight-free profile + 32-beam LiDAR find on this drive (bolt, hose and the thin far pillar
    # are not found: see README "Limitations")
    assert {"cone", "tug", "suitcase", "toolbox", "chock"} <= found
    assert scores["recall"] >= 0.6
    assert scores["median_position_error_m"] < 0.5
    # not "nothing else": far shadow edges are confirmed at 25-35 m (README "Limitations")
    assert scores["false_confirmed"] <= 2
    assert scores["precision"] >= 0.7
    # the written bag has every output topic, one message per image / fused frame
    with BagReader(out) as r:
        counts = r.counts()
    assert counts["/ood/masks"] == counts["/ood/instance_image"] == counts["/ood/overlay"] == FRAMES
    assert counts["/ood/score_map"] == FRAMES
    assert counts["/obstacles"] == counts["/obstacle_markers"] == c["fused"]
    assert counts["/diagnostics"] >= 1
    # only the overlays asked for are kept in memory (the bag has all of them)
    assert [(i, img.shape) for i, _, img in summary.overlays] == [(0, (360, 640, 3)), (5, (360, 640, 3))]


def test_camera_mask_quality_per_kind(bags, first):
    """The camera side's masks against the truth instance images (what `s2m demo` reports per kind)."""
    summary, _ = first
    ids = bags["instance_ids"]
    assert [fm.stamp_ns for fm in summary.camera_masks] == sorted(ids)  # every image, in order
    q = mask_quality([(ids[fm.stamp_ns], [m.full_mask(fm.width, fm.height) for m in fm.masks])
                      for fm in summary.camera_masks], read_truth(bags["mcap"])["objects"])
    assert q["frames"] == FRAMES and q["masks"] == first[0].counters["masks"]
    kinds = q["by_kind"]
    # measured 2026-12-07: chock, suitcase, tug recall 1.0 (IoU 0.95-1.0); cones 0.83 (IoU 0.57, split at
    # their bands); toolbox 0.46 (IoU 0.61: its far frames)
    for kind in ("chock", "suitcase", "tug"):
        assert kinds[kind]["recall"] >= 0.9 and kinds[kind]["mean_iou"] >= 0.8, (kind, kinds[kind])
    for kind in ("cone", "toolbox"):
        assert kinds[kind]["objects_seen"] == kinds[kind]["objects"] and kinds[kind]["mean_iou"] >= 0.45, kind
    # known misses (README "Limitations"): the bolt is under 8 px at 640x360; the hose and the far
    # pillar get no whole mask
    assert "bolt" not in kinds and q["skipped_small"] >= FRAMES - 4
    assert kinds["hose"]["recall"] < 0.2
    assert q["false_masks_per_frame"] <= 3.0


def _content(bag):
    """Every output message, minus wall-clock timings (stage latencies, diagnostics)."""
    out = []
    with BagReader(bag) as r:
        for topic, stamp, msg in r.messages([t for t in r.topics() if t != "/diagnostics"]):
            if topic == "/ood/masks":
                msg.stage_latencies_ms = []
            out.append((topic, stamp, _flatten(msg)))
    return out


def _flatten(msg):
    if hasattr(msg, "get_fields_and_field_types"):
        return tuple((f, _flatten(getattr(msg, f))) for f in msg.get_fields_and_field_types())
    if isinstance(msg, (list, tuple)):
        return tuple(_flatten(v) for v in msg)
    if isinstance(msg, np.ndarray) or type(msg).__name__ == "array":
        return bytes(np.asarray(msg).tobytes())
    if isinstance(msg, float) and math.isnan(msg):
        return "nan"
    return msg


def test_replaying_twice_gives_identical_outputs_and_storages_agree(bags, first):
    _, out1 = first
    out2 = bags["root"] / "out2"
    Replayer().run(bags["mcap"], out2, storage="sqlite3", show_progress=False)
    a, b = _content(out1), _content(out2)
    assert len(a) == len(b) and a == b
    # the same scenario stored as sqlite3 replays to the same result
    out3 = bags["root"] / "out3"
    Replayer(ReplayConfig(overlay=False, score_map=False)).run(bags["sqlite3"], out3, show_progress=False)
    c = _content(out3)
    only = {"/ood/masks", "/obstacles", "/obstacle_markers", "/ood/instance_image"}
    assert [m for m in a if m[0] in only] == [m for m in c if m[0] in only]


def test_missing_topic_and_wrong_type_are_clear_errors(bags):
    with pytest.raises(BagError, match=r"no image topic /cam/x .*--topics image=TOPIC"):
        Replayer(ReplayConfig(topics=ReplayTopics(image="/cam/x"))).run(bags["mcap"], bags["root"] / "e1")
    with pytest.raises(BagError, match="/lidar/points is sensor_msgs/msg/PointCloud2; the image topic must be"):
        Replayer(ReplayConfig(topics=ReplayTopics(image="/lidar/points"))).run(bags["mcap"], bags["root"] / "e2")
    with pytest.raises(BagError, match="exists"):
        Replayer().run(bags["mcap"], bags["mcap"])  # never overwrites a bag without force
    with pytest.raises(BagError):
        Replayer().run(bags["root"] / "nope", bags["root"] / "e3")


def test_cli_replay_and_its_errors(bags, tmp_path, capsys):
    from s2m_ros.cli.main import main

    assert main(["replay", str(bags["mcap"]), str(tmp_path / "o"), "--no-progress", "--no-overlay",
                 "--fusion-set", "tracker.min_hits=4", "--summary", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "confirmed tracks:" in out and "tracking in the map" in out
    import json

    s = json.loads((tmp_path / "s.json").read_text())
    assert s["counters"]["images"] == FRAMES and s["confirmed_track_ids"]
    assert main(["replay", str(bags["mcap"]), str(tmp_path / "o2"), "--topics", "images=/x"]) == 2
    assert "unknown role 'images'" in capsys.readouterr().err
    assert main(["replay", str(bags["mcap"]), str(tmp_path / "o3"), "--fusion-set", "tracker.min_hits=1"]) == 2
    assert "tracker.min_hits" in capsys.readouterr().err


# --------------------------------------------------------------------------- hostile input (issue 19)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    """4 frames at 160x90 with a small LiDAR (sqlite3): quick replays."""
    path = tmp_path_factory.mktemp("small") / "bag"
    scenario = make_scenario(ScenarioConfig(seed=0, frames=4, width=160, height=90, lidar_beams=8,
                                            lidar_azimuth_steps=128))
    write_scenario_bag(scenario, path, storage="sqlite3", show_progress=False)
    return path


def test_failures_on_single_messages_are_counted_and_the_replay_goes_on(small_bag, tmp_path, monkeypatch):
    """A ValueError on a message counts as bad input of its role, any other exception as processing_errors
    (with its text); neither ends the replay, and the output bag is written."""
    calls = {"cloud": 0, "odom": 0}
    on_cloud, on_odom = Replayer._on_cloud, Replayer._on_odom

    def flaky_cloud(self, stamp_ns, msg):
        calls["cloud"] += 1
        if calls["cloud"] == 2:
            raise RuntimeError("boom on the second cloud")
        return on_cloud(self, stamp_ns, msg)

    def refused_odom(self, stamp_ns, msg):
        calls["odom"] += 1
        if calls["odom"] == 3:
            raise ValueError("odometry out of its mind")
        return on_odom(self, stamp_ns, msg)

    monkeypatch.setattr(Replayer, "_on_cloud", flaky_cloud)
    monkeypatch.setattr(Replayer, "_on_odom", refused_odom)
    summary = Replayer().run(small_bag, tmp_path / "out", show_progress=False)
    c = summary.counters
    assert c["processing_errors"] == 1 and c["bad_odometry"] == 1 and c["bad_input"] == 1
    assert c["images_processed"] == 4 and c["clouds"] == 3  # the second cloud failed before it was counted
    assert summary.skipped_by_topic == {"/lidar/points": {"processing_errors": 1}, "/odom": {"bad_odometry": 1}}
    texts = {s["reason"]: s["error"] for s in summary.skipped}
    assert texts == {"processing_errors": "RuntimeError: boom on the second cloud",
                     "bad_odometry": "ValueError: odometry out of its mind"}
    d = summary.to_dict()
    assert d["n_skipped"] == 2 and len(d["skipped"]) == 2 and d["skipped"][0]["item"].startswith("/lidar/points @ ")
    with BagReader(tmp_path / "out") as r:
        assert r.counts()["/ood/masks"] == 4


def test_a_failing_output_bag_ends_the_replay_without_a_partial_bag(small_bag, tmp_path, monkeypatch):
    import errno

    from s2m_ros.bags.storage import BagWriteError, BagWriter

    write_raw = BagWriter.write_raw
    n = {"k": 0}

    def filling_up(self, topic, stamp_ns, data):
        n["k"] += 1
        if n["k"] > 3:
            raise BagWriteError("cannot write to bag %s: %s" % (self.path, OSError(errno.ENOSPC, "disk full")))
        return write_raw(self, topic, stamp_ns, data)

    monkeypatch.setattr(BagWriter, "write_raw", filling_up)
    with pytest.raises(BagError, match="cannot write to bag"):
        Replayer().run(small_bag, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_unreadable_rest_of_a_bag_keeps_what_was_replayed(small_bag, tmp_path, monkeypatch):
    """Storage that fails mid-way (a damaged file): reading stops with a warning and a counter, the
    output bag holds what was replayed."""
    messages = BagReader.messages

    def breaking(self, *args, **kwargs):
        def gen():
            for k, item in enumerate(messages(self, *args, **kwargs)):
                if k == 9:
                    raise BagError("cannot read bag %s after 9 message(s): database disk image is malformed"
                                   % self.path)
                yield item
        return gen()

    monkeypatch.setattr(BagReader, "messages", breaking)
    summary = Replayer().run(small_bag, tmp_path / "out", show_progress=False)
    assert summary.counters["bag_read_errors"] == 1 and summary.counters["messages"] == 9
    assert any("malformed" in w for w in summary.warnings)
    assert (tmp_path / "out" / "metadata.yaml").is_file()


def test_a_late_cloud_in_a_bag_is_skipped_as_out_of_order_not_a_time_reset(small_bag, tmp_path, monkeypatch):
    """Issue 19 (3), in replay: a cloud stamped 50 ms before the last fused one is skipped_out_of_order and the
    tracks kept (it was a time reset that dropped every track: the fusion node's policy, shared)."""
    import copy

    on_cloud, seen = Replayer._on_cloud, []

    def with_a_late_copy(self, stamp_ns, msg):
        on_cloud(self, stamp_ns, msg)
        seen.append(msg)
        if len(seen) == 3:
            late = copy.deepcopy(seen[1])
            t = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec - 5 * 10 ** 7
            late.header.stamp.sec, late.header.stamp.nanosec = divmod(t, 10 ** 9)
            on_cloud(self, stamp_ns, late)

    plain = Replayer().run(small_bag, tmp_path / "plain", show_progress=False)
    monkeypatch.setattr(Replayer, "_on_cloud", with_a_late_copy)
    late = Replayer().run(small_bag, tmp_path / "out", show_progress=False)
    c = late.counters
    assert c["skipped_out_of_order"] == 1 and c.get("time_resets", 0) == 0 and c["time_resets_tracker"] == 0
    assert c["fused"] == plain.counters["fused"] > 0
    assert [[(t.id, t.confirmed) for t in f.tracks] for f in late.frames] == [[(t.id, t.confirmed) for t in f.tracks]
                                                                               for f in plain.frames]
