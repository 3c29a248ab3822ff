"""`s2m play`: publish a rosbag2 bag over ROS 2 with its original timing (no rosbag2_py needed).

  s2m play BAG [--rate R] [--topics T ...] [--clock [HZ]] [--loop] [--start-offset S]
               [--qos-reliability reliable|best_effort] [--qos-depth N] [--wait-subscribers S]
               [--delay S] [--ack-timeout S] [--ros-args -r /camera/image_raw:=/image ...]

Message i is published at t0 + (stamp_i - stamp_0) / rate on a monotonic clock, stamp being the
bag's receive time; the bytes published are the bag's own CDR bytes (no decode / re-encode).
``--clock`` also publishes rosgraph_msgs/Clock on /clock with the bag time (for nodes started with
use_sim_time:=true). Topics recorded with transient-local QoS (/tf_static) are published latched;
a topic whose message type has no rclpy class here (tf2_msgs is not on PyPI) is skipped with a
warning, as is one whose recorded type hash differs from this environment's definition.
At the end it waits (--ack-timeout) until reliable subscribers acknowledged every message, so the
last messages are not lost when the process exits. Ctrl-C (or SIGTERM) stops it cleanly (exit 0). Exit 2: the bag or an option is unusable.
"""
import argparse
import signal
import sys
import time

from s2m_ros.bags.play import NS_PER_S, Player, plan_topics
from s2m_ros.cli.common import ArgumentParser, UsageError, command, fail

PROG = "s2m play"


def build_parser():
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("bag", metavar="BAG", help="rosbag2 bag folder (or its .mcap / .db3 file)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    ap.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics (default: all)")
    ap.add_argument("--clock", nargs="?", type=float, const=100.0, default=None, metavar="HZ",
                    help="publish /clock with the bag time at HZ (default 100 Hz when given)")
    ap.add_argument("--loop", action="store_true", help="start again at the end, until interrupted")
    ap.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                    help="skip the first S seconds of the bag (latched topics are still published)")
    ap.add_argument("--qos-reliability", choices=("reliable", "best_effort"), default="reliable",
                    help="reliability of the non-latched publishers (default reliable: matches every subscriber)")
    ap.add_argument("--qos-depth", type=int, default=10, help="history depth of the publishers (default 10)")
    ap.add_argument("--wait-subscribers", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds until every played topic has a subscriber")
    ap.add_argument("--delay", type=float, default=0.0, metavar="S", help="sleep S seconds before playing")
    ap.add_argument("--ack-timeout", type=float, default=5.0, metavar="S",
                    help="at the end, wait up to S seconds until reliable subscribers acknowledged every "
                         "message (a reliable writer that exits earlier loses what is still in flight)")
    ap.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors")
    return ap


def _split_ros_args(argv):
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        return argv[:i], argv[i:]
    return argv, []


def _check(ap, args):
    if not args.rate > 0:
        ap.error("--rate must be > 0")
    if args.clock is not None and not args.clock > 0:
        ap.error("--clock HZ must be > 0")
    if min(args.start_offset, args.wait_subscribers, args.delay, args.ack_timeout) < 0:
        ap.error("--start-offset, --wait-subscribers, --delay and --ack-timeout must be >= 0")
    if not 1 <= args.qos_depth <= 1_000_000:
        ap.error("--qos-depth must be in 1..1000000")
    for name in ("rate", "clock", "start_offset", "wait_subscribers", "delay", "ack_timeout"):
        value = getattr(args, name)
        if value is not None and not value < float("inf"):
            ap.error("--%s must be finite" % name.replace("_", "-"))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@command(PROG)
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    mine, ros_args = _split_ros_args(argv)
    ap = build_parser()
    args = ap.parse_args(mine)
    _check(ap, args)
    from s2m_ros.bags.storage import BagError, BagReader

    def say(text):
        if not args.quiet:
            print(text, flush=True)

    bag = BagReader(args.bag)  # BagError: one line, exit 2 (common.command)
    try:
        playable, skipped = plan_topics(bag, args.topics)
    except BagError:
        bag.close()
        raise
    for topic, reason in skipped.items():
        print("s2m play: warning: skipping %s: %s" % (topic, reason), file=sys.stderr, flush=True)
    if not playable:
        bag.close()
        return fail(PROG, "nothing to play in %s (every selected topic was skipped)" % args.bag)

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    context = rclpy.Context()
    try:
        rclpy.init(args=["s2m_play"] + ros_args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # noqa: BLE001 - rclpy's RCLError / ValueError for malformed --ros-args
        bag.close()
        raise UsageError("cannot start ROS 2 with --ros-args %s: %s" % (" ".join(ros_args[1:]), exc)) from exc
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    node, player, t_start, t_end, passes = None, None, time.monotonic(), None, 0
    interrupted = False
    try:
        node = rclpy.create_node("s2m_play", context=context)
        player = Player(node, bag, playable, rate=args.rate, clock_hz=args.clock,
                        reliability=args.qos_reliability, depth=args.qos_depth)
        counts = bag.counts()
        say("playing %s (%s): %d messages on %d topics, %.2f s of bag time at rate %g%s" % (
            args.bag, bag.storage, sum(counts[t] for t in playable), len(playable), bag.duration_ns / NS_PER_S,
            args.rate, ", /clock at %g Hz" % args.clock if args.clock else ""))
        if args.wait_subscribers > 0 and not player.wait_for_subscribers(args.wait_subscribers):
            missing = [t for t, p in player.publishers.items() if p.get_subscription_count() == 0]
            print("s2m play: warning: no subscriber on %s after %.1f s; playing anyway" % (
                ", ".join(missing), args.wait_subscribers), file=sys.stderr, flush=True)
        if args.delay > 0:
            time.sleep(args.delay)
        t_start = time.monotonic()
        while True:
            passes += 1
            player.play_once(args.start_offset)
            if not args.loop:
                break
        t_end = time.monotonic()
        unacked = player.wait_for_acks(args.ack_timeout)
        if unacked:
            print("s2m play: warning: not every message on %s was acknowledged within %.1f s" % (
                ", ".join(unacked), args.ack_timeout), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        bag.close()
    elapsed = (t_end or time.monotonic()) - t_start  # playback only, without the wait for acks
    if player is not None:
        total = sum(player.published.values())
        say("%s: published %d messages in %.2f s (%d pass%s)%s" % (
            "interrupted" if interrupted else "done", total, elapsed, passes, "" if passes == 1 else "es",
            ", %d /clock ticks" % player.clock_ticks if args.clock else ""))
        if not args.quiet:
            for topic, n in player.published.items():
                print("  %-28s %6d" % (topic, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
