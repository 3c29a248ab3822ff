"""`s2m demo`: the whole system on the synthetic apron scenario, offline, with scores against the truth.

  s2m demo [--out demo_out] [--frames 40] [--seed 0] [--profile surface+grabcut] [--storage mcap]
           [--camera 640x360]

1. generate the scenario bag ``OUT/scenario`` (camera, CameraInfo, LiDAR, odometry, /tf_static and
   truth.json) unless it exists with the same seed, length and camera size;
2. replay it (`s2m replay`: camera pipeline + fusion + tracking on every frame) into ``OUT/replay``;
3. score confirmed tracks against the truth and write ``OUT/summary.json`` (recall, precision,
   median_position_error_m, false_confirmed, per-stage timings, the camera masks' quality per object
   kind), ``OUT/bev.png`` (bird's-eye view of confirmed tracks and truth) and ``OUT/overlays/*.jpg``.
"""
import argparse
import os
import shutil
import sys
import time

from s2m_ros.cli.common import ArgumentParser, UsageError, check_output_dir, command

PROG = "s2m demo"


def _scenario_matches(bag, seed, frames, size):
    from s2m_ros.bags.storage import BagError, read_truth

    try:
        truth = read_truth(bag)
    except BagError:
        return False
    camera = truth.get("camera", {})
    return (truth.get("seed") == seed and len(truth.get("frames", ())) == frames
            and (camera.get("width"), camera.get("height")) == size)


def _camera_size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 1280x720, got %r" % text) from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise argparse.ArgumentTypeError("camera size %dx%d outside 64..4096" % (w, h))
    return w, h


@command(PROG)
def main(argv=None):
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    ap.add_argument("--frames", type=int, default=40, help="scenario length in camera frames at 10 Hz")
    ap.add_argument("--seed", type=int, default=0, help="scenario seed")
    ap.add_argument("--profile", default="surface+grabcut", help="camera pipeline profile (default: weight-free)")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    ap.add_argument("--overlays", type=int, default=8, help="number of overlay images to write")
    ap.add_argument("--camera", type=_camera_size, default=(640, 360), metavar="WxH",
                    help="scenario camera resolution (default 640x360; the bolt is 1-3 pixels there)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.seed < 0 or args.overlays < 0:
        raise UsageError("--frames must be >= 1, --seed and --overlays >= 0 (got %d, %d, %d)"
                         % (args.frames, args.seed, args.overlays))
    check_output_dir(args.out, "--out")

    import cv2

    from s2m_ros.bags.storage import read_truth, write_scenario_bag
    from s2m_ros.files import write_json
    from s2m_ros.sim.scenario import ScenarioConfig, make_scenario
    from s2m_ros.eval.mask_quality import mask_quality
    from s2m_ros.eval.scenario_eval import draw_bev, evaluate
    from s2m_ros.segmentation.pipeline import PipelineConfig
    from s2m_ros.bags.replay import ReplayConfig, Replayer

    config = ReplayConfig(pipeline=PipelineConfig.from_dict({"profile": args.profile}))  # bad profile: exit 2 now
    t0 = time.perf_counter()
    show = False if args.no_progress else None
    os.makedirs(args.out, exist_ok=True)
    bag = os.path.join(args.out, "scenario")
    try:
        scenario = make_scenario(ScenarioConfig(seed=args.seed, frames=args.frames, width=args.camera[0],
                                                height=args.camera[1]))
    except ValueError as exc:
        raise UsageError("invalid scenario: %s" % exc) from exc
    frames = list(scenario.frames())  # the truth instance images too (mask quality below)
    if _scenario_matches(bag, args.seed, args.frames, args.camera):
        print("scenario: reusing %s" % bag)
    else:
        s = write_scenario_bag(scenario, bag, storage=args.storage, force=os.path.exists(bag), frames=frames,
                               show_progress=show)
        print("scenario: wrote %s (%d frames, %.1f MB) in %.1f s" % (bag, s.frames, s.size_bytes / 1e6, s.seconds))
    instance_ids = {int(f.stamp_ns): f.instance_ids for f in frames}
    del frames
    truth = read_truth(bag)
    out_bag = os.path.join(args.out, "replay")
    n = len(truth["frames"])  # images in the bag: keep only the overlays written as pictures
    picks = sorted({round(i * (n - 1) / max(args.overlays - 1, 1)) for i in range(min(args.overlays, n))})
    summary = Replayer(config).run(bag, out_bag, storage=args.storage, force=os.path.exists(out_bag),
                                   show_progress=show, keep_overlays=picks, keep_masks=True)
    from s2m_ros.cli.replay import print_summary, report_skipped

    print_summary(summary)
    report_skipped(summary, PROG)
    scores = evaluate(summary.frames, truth)
    quality = mask_quality(((instance_ids[fm.stamp_ns], [m.full_mask(fm.width, fm.height) for m in fm.masks])
                            for fm in summary.camera_masks if fm.stamp_ns in instance_ids), truth["objects"])
    result = {
        "recall": scores["recall"], "precision": scores["precision"],
        "median_position_error_m": scores["median_position_error_m"],
        "false_confirmed": scores["false_confirmed"],
        "stage_ms": summary.stage_ms,
        "scores": scores,
        "mask_quality": quality,
        "replay": summary.to_dict(),
        "scenario": {"bag": bag, "seed": truth["seed"], "frames": len(truth["frames"]),
                     "objects": len(truth["objects"])},
        "profile": args.profile,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(os.path.join(args.out, "summary.json"), result)
    cv2.imwrite(os.path.join(args.out, "bev.png"), draw_bev(summary.frames, truth, scores))
    folder = os.path.join(args.out, "overlays")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for index, _, overlay in summary.overlays:
        cv2.imwrite(os.path.join(folder, "frame_%03d.jpg" % index), overlay)
    by_cat = ", ".join("%s %d/%d" % (c, v["found"], v["objects"]) for c, v in scores["recall_by_category"].items())
    print("\nscores vs truth: recall %s (%s), precision %s, false confirmed %d, median position error %s m"
          % (scores["recall"], by_cat, scores["precision"], scores["false_confirmed"],
             scores["median_position_error_m"]))
    print("camera masks (per object-frame of >= %d px, IoU >= %.1f): %s; false masks (mostly on no object) "
          "%s per frame" % (quality["min_pixels"], quality["iou_hit"], ", ".join(
              "%s %.2f (IoU %.2f)" % (k, v["recall"], v["mean_iou"]) for k, v in quality["by_kind"].items()),
              quality["false_masks_per_frame"]))
    print("look at: %s/summary.json, %s/bev.png, %s/overlays/, output bag %s (%.0f s in all)"
          % (args.out, args.out, args.out, out_bag, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
