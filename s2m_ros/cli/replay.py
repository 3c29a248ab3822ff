"""`s2m replay`: run the camera pipeline and the fusion/tracking on every frame of a bag, offline.

  s2m replay IN_BAG OUT_BAG [--profile surface+grabcut] [--config pipeline.yaml] [--set k=v ...]
             [--fusion-params config/fusion.yaml] [--fusion-set k=v ...]
             [--topics image=/camera/image_raw camera_info=... cloud=... odom=... tf_static=...]
             [--extrinsics auto|tf_static|parameters] [--fixed-frame auto|on|off]
             [--storage mcap|sqlite3] [--force] [--no-score-map] [--no-overlay] [--summary FILE]

Deterministic: every message in timestamp order, nothing dropped, no wall clock. OUT_BAG gets
/ood/masks, /ood/instance_image, /ood/score_map, /ood/overlay, /obstacles, /obstacle_markers and
/diagnostics. Input bags: sqlite3 or MCAP (rosbag2 folders or single files).

A message that cannot be deserialised or decoded, or on which processing fails, is skipped and
counted (by topic and reason: the summary's counters bad_messages, bad_input, processing_errors,
"skipped_by_topic" and the first ones with their error under "skipped"); the replay goes on and a
line on stderr reports them at the end. A bad argument or file, or an output that cannot be written:
one line on stderr, exit 2.
"""
import sys

from s2m_ros.cli.common import ArgumentParser, UsageError, check_output_file, command
from s2m_ros.cli.segment import add_pipeline_arguments, build_config, check_pipeline_arguments, set_dotted

ROLES = ("image", "camera_info", "cloud", "odom", "tf_static")


def parse_topics(items):
    from s2m_ros.bags.replay import ReplayTopics

    topics = ReplayTopics()
    for item in items or ():
        if "=" not in item:
            raise UsageError("--topics expects ROLE=TOPIC (roles: %s), got %r" % (", ".join(ROLES), item))
        role, topic = item.split("=", 1)
        if role not in ROLES:
            raise UsageError("--topics: unknown role %r (roles: %s)" % (role, ", ".join(ROLES)))
        if not topic.strip("/"):
            raise UsageError("--topics %s: no topic name" % item)
        setattr(topics, role, topic if topic.startswith("/") else "/" + topic)
    return topics


def add_replay_arguments(ap):
    add_pipeline_arguments(ap)
    ap.add_argument("--fusion-params", help="fusion_node params file (config/fusion.yaml format); default: the "
                    "node's defaults")
    ap.add_argument("--fusion-set", action="append", metavar="KEY=VALUE",
                    help="override a fusion_node parameter, e.g. tracker.min_hits=4")
    ap.add_argument("--topics", nargs="+", metavar="ROLE=TOPIC",
                    help="input topics by role (%s); defaults: /camera/image_raw, /camera/camera_info, "
                    "/lidar/points, /odom, /tf_static" % ", ".join(ROLES))
    ap.add_argument("--extrinsics", choices=("auto", "tf_static", "parameters"), default="auto",
                    help="camera <- LiDAR from the bag's /tf_static or the fusion parameters (auto: tf_static "
                    "when present)")
    ap.add_argument("--fixed-frame", choices=("auto", "on", "off"), default="auto",
                    help="track in the odometry's frame (auto: when the bag has odometry)")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    ap.add_argument("--force", action="store_true", help="replace OUT_BAG if it exists")
    ap.add_argument("--no-score-map", action="store_true", help="do not write /ood/score_map")
    ap.add_argument("--no-overlay", action="store_true", help="do not write /ood/overlay")
    ap.add_argument("--no-progress", action="store_true")


def replay_config(args):
    from s2m_ros.bags.replay import ReplayConfig, flatten_params, fusion_parameters

    overrides = {}
    for item in args.fusion_set or ():
        set_dotted(overrides, item, "--fusion-set")
    params = fusion_parameters(flatten_params(overrides), args.fusion_params)
    return ReplayConfig(pipeline=build_config(args), fusion_params=params, topics=parse_topics(args.topics),
                        extrinsics=args.extrinsics, fixed_frame=args.fixed_frame,
                        score_map=not args.no_score_map, overlay=not args.no_overlay)


def print_summary(summary, out=None):
    out = out or sys.stdout  # looked up per call: a default bound at import outlives a replaced sys.stdout
    c = summary.counters
    d = summary.to_dict()
    print("replayed %s -> %s (%s) in %.1f s" % (summary.input, summary.output, summary.storage, summary.seconds),
          file=out)
    print("  images %d (processed %d, masks %d), clouds %d, matched %d, fused %d; tracking in the %s, "
          "extrinsics from %s" % (c.get("images", 0), c.get("images_processed", 0), c.get("masks", 0),
                                  c.get("clouds", 0), c.get("matched", 0), c.get("fused", 0),
                                  summary.tracking_frame, summary.extrinsics), file=out)
    problems = {k: v for k, v in c.items() if v and (k.startswith(("skipped_", "unmatched_", "bad_"))
                                                     or k.endswith("errors"))}
    if problems:
        print("  not fused / errors: %s" % ", ".join("%s %d" % kv for kv in sorted(problems.items())), file=out)
    print("  confirmed tracks: %d %s" % (len(d["confirmed_track_ids"]), d["confirmed_track_ids"]), file=out)
    print("  per-stage median ms: %s" % ", ".join(
        "%s %.1f" % (k, v["median"]) for k, v in summary.stage_ms.items()), file=out)
    print("  written: %s" % ", ".join("%s %d" % kv for kv in sorted(summary.output_counts.items())), file=out)
    for w in summary.warnings:
        print("  warning: %s" % w, file=out)


def report_skipped(summary, prog="s2m replay", where=None):
    """One line on stderr when messages were skipped (nothing otherwise)."""
    n = summary.n_skipped
    if not n:
        return
    parts = ["%s %s %d" % (topic, reason, k) for topic, reasons in summary.skipped_by_topic.items()
             for reason, k in reasons.items()]
    first = summary.skipped[0]["error"] if summary.skipped else ""
    print("%s: skipped %d of %d input message(s) (%s); first: %s%s" % (
        prog, n, summary.counters.get("messages", n), ", ".join(parts), first[:200],
        ("; listed under \"skipped\" in %s" % where) if where else ""), file=sys.stderr, flush=True)


PROG = "s2m replay"


@command(PROG)
def main(argv=None):
    import argparse

    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("in_bag", help="input rosbag2 (folder, .mcap or .db3)")
    ap.add_argument("out_bag", help="output rosbag2 folder")
    ap.add_argument("--summary", help="also write the summary as JSON here")
    add_replay_arguments(ap)
    args = ap.parse_args(argv)
    check_pipeline_arguments(args)
    if args.summary:
        check_output_file(args.summary, "--summary")
    from s2m_ros.bags.replay import Replayer
    from s2m_ros.files import write_json

    # user errors (bag, parameters, pipeline configuration, files) are one line, exit 2 (common.command)
    summary = Replayer(replay_config(args)).run(args.in_bag, args.out_bag, storage=args.storage, force=args.force,
                                                show_progress=False if args.no_progress else None)
    print_summary(summary)
    if args.summary:
        write_json(args.summary, summary.to_dict())
    report_skipped(summary, PROG, args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
