"""What both node executables share: QoS from parameters, --help, start-up and clean shutdown."""
import sys

from s2m_ros.params import ParameterError, markdown_table

RELIABILITY_CHOICES = ("best_effort", "reliable")


def make_qos(reliability, depth):
    """KEEP_LAST / VOLATILE profile with the given reliability and depth."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth),
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE)


def help_text(prog, summary, topics, specs):
    lines = [
        "usage: %s [--help] [--ros-args --params-file FILE -p NAME:=VALUE -r FROM:=TO ...]" % prog,
        "",
        summary,
        "",
        "Topics (relative names, remap with -r):",
    ]
    lines += ["  %-28s %-6s %-38s %s" % t for t in topics]
    lines += ["", "Parameters:", markdown_table(specs), ""]
    return "\n".join(lines)


def _user_args(argv):
    """Arguments before --ros-args (the ones that are ours)."""
    out = []
    for arg in argv[1:]:
        if arg == "--ros-args":
            break
        out.append(arg)
    return out


def run_node(node_factory, argv, help_str):
    """Start rclpy, build the node, spin until SIGINT/SIGTERM, shut down cleanly. Returns the exit code.

    Exit codes: 0 clean shutdown, 2 invalid configuration (message on stderr).
    """
    argv = list(sys.argv if argv is None else argv)
    user = _user_args(argv)
    if "-h" in user or "--help" in user:
        print(help_str)
        return 0
    if user:
        print("unknown argument(s) %s; see --help" % " ".join(user), file=sys.stderr)
        return 2
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=argv)  # installs SIGINT and SIGTERM handlers that shut the context down
    node = None
    try:
        node = node_factory()
    except ParameterError as exc:
        print("[%s] invalid configuration: %s" % (argv[0].rsplit("/", 1)[-1], exc), file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # not through the node's logger: after a signal the context is gone and /rosout with it
        print("[%s] shutting down" % node.get_name(), file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
