"""`s2m`: one command with subcommands, built on the same core as the nodes.

  s2m export espnet|espnetv2|mobilesam ...   produce the ONNX models the profiles need (torch)
  s2m fit-sml ...                            fit standardized-max-logit statistics on ID images
  s2m segment ...                            run the pipeline on image files, write overlays + JSON
  s2m bench ...                              per-stage latency per profile/backend, JSON + table
  s2m eval ...                               pixel / component / S2M / instance metrics on a dataset
  s2m scenario OUT_BAG ...                   synthetic apron drive with ground truth, as a rosbag2 bag
  s2m replay IN_BAG OUT_BAG ...              both nodes' algorithms on every frame of a bag, offline
  s2m demo [--out demo_out]                  scenario + replay + scores against the truth
  s2m play BAG ...                           publish a bag over ROS 2 with its original timing

Subcommand modules are imported only when used, so `s2m --help` is fast and the runtime
subcommands never import torch.

Errors (s2m_ros/cli/common.py): a bad item (image, frame, label, bag message) is skipped, counted and
reported at the end, and the outputs are still written; a user error (bad argument, missing input,
malformed config or YAML, output not writable) is one line ``s2m <command>: error: ...`` on stderr and
exit code 2; anything else is a bug and keeps its traceback (exit 1). ``S2M_DEBUG=1``: tracebacks
for user errors and skipped items too.
"""
import sys

COMMANDS = {
    "export": ("s2m_ros.cli.export", "export models to ONNX (espnet, espnetv2, mobilesam)"),
    "fit-sml": ("s2m_ros.cli.fit_sml", "fit standardized max-logit statistics from in-distribution images"),
    "segment": ("s2m_ros.cli.segment", "run the S2M pipeline on images; write masks, overlays, JSON"),
    "bench": ("s2m_ros.cli.bench", "per-stage latency per profile and backend, with ratios"),
    "eval": ("s2m_ros.cli.eval", "anomaly-segmentation metrics on a labelled dataset (pixel, component, S2M, instance)"),
    "scenario": ("s2m_ros.cli.scenario", "write the synthetic apron drive (camera, LiDAR, odometry, truth) as a rosbag2 bag"),
    "replay": ("s2m_ros.cli.replay", "run camera pipeline + fusion + tracking on every frame of a bag, offline, into a bag"),
    "demo": ("s2m_ros.cli.demo", "scenario -> replay -> scores vs truth, bird's-eye view and overlays (make demo)"),
    "play": ("s2m_ros.cli.play", "publish a rosbag2 bag over ROS 2 with its original timing (+ /clock)"),
}


def usage():
    lines = ["usage: s2m <command> [options]", "", "commands:"]
    lines += ["  %-10s %s" % (name, text) for name, (_, text) in COMMANDS.items()]
    lines += ["", "`s2m <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print("s2m: error: unknown command %r (commands: %s; see s2m --help)" % (name, ", ".join(COMMANDS)),
              file=sys.stderr)
        return 2
    import importlib

    from s2m_ros.cli.common import guarded

    module = importlib.import_module(COMMANDS[name][0])
    # the subcommands guard themselves too (common.command); this covers the ones that do not (export)
    return guarded("s2m " + name, module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
