"""What both node executables share: QoS from parameters, --help, start-up and clean shutdown."""
import sys

from s2m_ros.ros.conversions import ConversionError
from s2m_ros.ros.params import ParameterError, markdown_table

RELIABILITY_CHOICES = ("best_effort", "reliable")


def make_qos(reliability, depth):
    """KEEP_LAST / VOLATILE profile with the given reliability and depth."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth),
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE)


def decode_or_report(node, stats, counter, what, decode):
    """Run ``decode()``; on ConversionError count it under ``counter``, log (rate-limited) and return None."""
    try:
        return decode()
    except ConversionError as exc:
        stats.error(counter, str(exc))
        node.get_logger().warning("%s skipped: %s" % (what, exc), throttle_duration_sec=2.0)
        return None


def on_camera_info(node, msg):
    """Shared CameraInfo callback: validate, count, keep the latest valid model in ``node.camera``."""
    from s2m_ros.ros.conversions.camera_info import camera_info_to_camera

    node.stats.count("camera_info_received")
    camera = decode_or_report(node, node.stats, "bad_camera_info", "CameraInfo", lambda: camera_info_to_camera(msg))
    if camera is not None:
        for warning in camera.warnings:  # usable, but something in it is ignored (non-zero padding of D)
            node.stats.count("camera_info_warnings")
            node.stats.set_info("last_camera_info_warning", warning)
            node.get_logger().warning("CameraInfo: %s" % warning, throttle_duration_sec=10.0)
        node.camera = camera


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

    Exit codes: 0 clean shutdown, 2 invalid configuration or a missing/unusable model file
    (message on stderr, naming the parameter or the file and how to produce it).
    """
    argv = list(sys.argv if argv is None else argv)
    user = _user_args(argv)
    if "-h" in user or "--help" in user:
        print(help_str)
        return 0
    if user:
        print("unknown argument(s) %s; see --help" % " ".join(user), file=sys.stderr)
        return 2
    prog = argv[0].rsplit("/", 1)[-1]

    def invalid(text):
        print("[%s] invalid configuration: %s" % (prog, " ".join(str(text).split())), file=sys.stderr)
        return 2

    # --params-file FILE (after --ros-args): missing, a folder or not YAML is a one-line error, not rcl's
    # "Couldn't parse params file" RCLError traceback
    from s2m_ros.files import YamlFileError, read_yaml_file

    for flag, path in zip(argv[1:], argv[2:]):
        if flag != "--params-file":
            continue
        try:
            read_yaml_file(path)
        except YamlFileError as exc:
            return invalid("--params-file %s: %s" % (path, exc.reason))
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    try:
        rclpy.init(args=argv)  # installs SIGINT and SIGTERM handlers that shut the context down
    except Exception as exc:
        # rcl's own argument parsing (a params file it cannot read as parameters, a malformed -p / -r rule):
        # a configuration problem, one line; anything else stays a visible error
        import re

        text = " ".join(str(exc).split())
        if type(exc).__name__ != "RCLError" or not ("Couldn't parse" in text or "params file" in text):
            raise
        text = re.sub(r",? at \S+:\d+", "", text.replace("failed to initialize rcl: ", "")).strip(" ,")
        return invalid(text)
    # The executor exists before the node says "started:": a signal right after that line ends the spin
    # (rclpy.spin made its executor only then and raised RCLError "context is not valid", exit 1).
    try:
        executor = SingleThreadedExecutor()
    except Exception:
        if rclpy.ok():
            raise
        return 0  # a signal during start-up, before there was anything to shut down
    node = None
    try:
        node = node_factory()
    except KeyboardInterrupt:  # SIGINT while the node was being built (e.g. a model loading): a shutdown
        print("[%s] shutting down (interrupted during start-up)" % prog, file=sys.stderr)
        rclpy.try_shutdown()
        return 0
    except (ParameterError, FileNotFoundError, ValueError) as exc:
        # ValueError: pipeline / scorer configuration errors (PipelineConfigError, ScorerConfigError);
        # FileNotFoundError: ModelFileError (path + the command that produces the file)
        rclpy.try_shutdown()
        return invalid(exc)
    try:
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # a signal shut the context down under whatever rclpy was doing: that is a shutdown
    finally:
        # not through the node's logger: after a signal the context is gone and /rosout with it
        print("[%s] shutting down" % node.get_name(), file=sys.stderr)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
