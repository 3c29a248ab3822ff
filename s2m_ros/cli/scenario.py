"""`s2m scenario`: the synthetic apron drive (camera, LiDAR, odometry, ground truth) as a rosbag2 bag.

  s2m scenario OUT_BAG [--seed N] [--frames N] [--storage mcap|sqlite3] [--force] [--no-progress]

Writes the bag folder OUT_BAG (topics: /camera/image_raw, /camera/camera_info, /lidar/points,
/odom, /tf, /tf_static) and the ground truth OUT_BAG/truth.json (objects, per-frame poses,
visible ids and 2D boxes). Deterministic: the same seed and options give the same messages.
Play it with `s2m play OUT_BAG` (or `ros2 bag play OUT_BAG` on a full ROS 2 install).
"""
import argparse
import sys

from s2m_ros.cli.common import ArgumentParser, UsageError, command, fail

PROG = "s2m scenario"


def build_parser():
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT_BAG", help="bag folder to create (must not exist unless --force)")
    ap.add_argument("--seed", type=int, default=0, help="scenario seed (default 0)")
    ap.add_argument("--frames", type=int, default=40, help="camera frames at 10 Hz (default 40)")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    ap.add_argument("--force", action="store_true", help="replace OUT_BAG if it is an existing bag")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _mb(n):
    return "%.1f MB" % (n / 1e6)


@command(PROG)
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.frames < 1:
        raise UsageError("--frames must be >= 1, got %d" % args.frames)
    if args.seed < 0:
        raise UsageError("--seed must be >= 0, got %d" % args.seed)
    from s2m_ros.bags.storage import TRUTH_FILE, BagReader, write_scenario_bag
    from s2m_ros.sim.scenario import ScenarioConfig, make_scenario

    try:
        scenario = make_scenario(ScenarioConfig(seed=args.seed, frames=args.frames))
    except ValueError as exc:
        return fail(PROG, "invalid scenario: %s" % exc)
    # BagError (output exists, cannot be created or written) and OSError: one line, exit 2 (common.command)
    summary = write_scenario_bag(scenario, args.out, storage=args.storage, force=args.force,
                                 show_progress=False if args.no_progress else None)
    with BagReader(summary.path) as bag:
        types, duration = bag.topics(), bag.duration_ns / 1e9
    total = sum(summary.counts.values())
    print("wrote %s: %s, %d frames, %d messages, %.2f s of data, %s, in %.1f s" % (
        summary.path, summary.storage, summary.frames, total, duration, _mb(summary.size_bytes), summary.seconds))
    width = max(len(t) for t in summary.counts)
    for topic, n in summary.counts.items():
        print("  %-*s  %-30s %5d" % (width, topic, types.get(topic, "?"), n))
    print("  ground truth: %s (%d objects, seed %d)" % (summary.path / TRUTH_FILE, len(scenario.objects), args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
