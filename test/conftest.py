"""Shared test fixtures: loopback-only ROS, private domain, node subprocesses, data paths."""
import itertools
import os
import pathlib
import signal
import subprocess
import time

import pytest
from hypothesis import settings

# CI (a clean clone, CI=true): derandomized property tests, so a landing never depends on the draw;
# elsewhere hypothesis explores new examples each run and remembers failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Loopback only, and domains of our own. Each test that puts nodes on DDS gets a fresh domain (fixture
# _fresh_ros_domain below) from a pool of its process: pytest-xdist workers (gw0, gw1, ...) have disjoint
# pools, and two runs at once (controller PIDs of different parity) too; a domain comes back only after
# _DOMAIN_POOL - 1 other such tests, long after the nodes of its last test have left the DDS graph.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_DOMAIN_POOL = 12
if os.environ.get("S2M_TEST_DOMAIN_BASE"):  # a run beside another one on this machine (e.g. `make fuzz`)
    _DOMAIN_BASE = int(os.environ["S2M_TEST_DOMAIN_BASE"])
elif _WORKER.startswith("gw") and _WORKER[2:].isdigit():
    _DOMAIN_BASE = 2 + (os.getppid() % 2) * 48 + (int(_WORKER[2:]) % 4) * _DOMAIN_POOL
else:
    _DOMAIN_BASE = 2 + (os.getpid() % 2) * 48
os.environ.setdefault("ROS_DOMAIN_ID", str(_DOMAIN_BASE))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("ROS_LOG_DIR", str(REPO / "log" / "ros-test"))
# Large best-effort messages through shared memory (see config/fastdds_localhost.xml).
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_localhost.xml"))


# Longest first. pytest-xdist deals tests out in collection order, so the long modules (--durations,
# 2026-12-07: RoadAnomaly 60 frames ~70 s, the models, the replays, the live bag) start at once on the
# workers instead of ending the run on one of them; the rest keep their order. The ESPNet and MobileSAM
# exports are first needed on different workers.
_LONG_FIRST = ("test_real_roadanomaly.py", "test_mobilesam.py", "test_live_bag.py", "test_espnet.py",
               "test_replay.py", "test_camera_node.py", "test_fusion_node.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


def package_prefix():
    from ament_index_python.packages import get_package_prefix

    return pathlib.Path(get_package_prefix("s2m_ros"))


def package_share():
    from ament_index_python.packages import get_package_share_directory

    return pathlib.Path(get_package_share_directory("s2m_ros"))


@pytest.fixture(scope="session")
def prefix():
    return package_prefix()


@pytest.fixture(scope="session")
def share():
    return package_share()


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real-data tests need it beside the repository)")
    return SHARED_DATA


ESPNET_PTH = "weights/espnet_p2_q8_cityscapes/decoder/espnet_p_2_q_8.pth"


def _once_per_run(tmp_path_factory, name, make):
    """``make(folder) -> JSON-able result``, computed once per test run: in a folder shared by the
    pytest-xdist workers of this run (under a file lock), or this session's own without xdist."""
    import json

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, shared by its workers
    folder = base / ("once-" + name)
    done = folder / "result.json"
    with FileLock(str(base / ("once-%s.lock" % name))):
        if not done.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(make(folder)))
    return json.loads(done.read_text())


@pytest.fixture(scope="session")
def espnet_export(tmp_path_factory):
    """The published ESPNet Cityscapes weights exported once per run through `s2m export espnet`
    (with its ONNX Runtime vs torch parity check): ``{"path": ..., "stdout": ...}``."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real-data tests need it beside the repository)")

    def make(folder):
        import contextlib
        import io

        from s2m_ros.export import segnet

        out, buf = folder / "espnet.onnx", io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = segnet.main(["espnet", "--weights", str(SHARED_DATA / ESPNET_PTH), "--out", str(out)])
        assert rc == 0, buf.getvalue()
        return {"path": str(out), "stdout": buf.getvalue()}

    return _once_per_run(tmp_path_factory, "espnet", make)


@pytest.fixture(scope="session")
def mobilesam_export(tmp_path_factory):
    """MobileSAM with random weights (checkpoint seed 0) exported once per run through
    `s2m export mobilesam` (with its parity check): ``{"ckpt", "enc", "dec", "report"}``."""

    def make(folder):
        import contextlib
        import io
        import json

        from s2m_ros.export import mobilesam as ex

        ckpt = ex.random_checkpoint(str(folder / "mobile_sam.pt"), seed=0)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = ex.main(["--checkpoint", ckpt, "--out-dir", str(folder / "models")])
        assert rc == 0, buf.getvalue()
        text = buf.getvalue()
        report = json.loads(text[:text.rindex("}") + 1])
        return {"ckpt": ckpt, "enc": report["encoder"], "dec": report["decoder"], "report": report}

    return _once_per_run(tmp_path_factory, "mobilesam", make)


_DDS_FIXTURES = {"rclpy_context", "probe", "start_node"}
_DOMAIN_USES = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_ros_domain(request):
    """A ROS domain of its own for each test that starts nodes or an rclpy context: with one domain per
    process, tests read /diagnostics and topics of the previous test's nodes (3 of 5 two-worker runs
    here, 2026-12-07). Autouse fixtures run first, so the context and node processes see it."""
    if not _DDS_FIXTURES & set(request.fixturenames):
        yield
        return
    before = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(_DOMAIN_BASE + next(_DOMAIN_USES) % _DOMAIN_POOL)
    yield
    os.environ["ROS_DOMAIN_ID"] = before


@pytest.fixture
def rclpy_context():
    """A fresh rclpy context per test (verified stable under CI conditions)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def probe(rclpy_context):
    """A test-side rclpy node (s2m_ros.cli.probe.Probe): publishers, collectors, /diagnostics."""
    from s2m_ros.cli.probe import Probe

    p = Probe(rclpy_context)
    yield p
    p.close()


class NodeProcess:
    """An installed node executable running in its own process; output captured to a file."""

    def __init__(self, exe, args, log_path, env=None):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([str(exe)] + list(args), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env or os.environ.copy(), start_new_session=True)

    def output(self):
        if not self._log.closed:
            self._log.flush()
        return pathlib.Path(self.log_path).read_text()

    def wait_for_output(self, text, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.05)
        return False

    def stop(self, sig=signal.SIGINT, timeout=15.0):
        """Send ``sig`` (to this PID only) and return the exit code; kill if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("%s did not exit within %.0f s of %s:\n%s" % (
                    self.proc.args[0], timeout, sig.name, self.output()))
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_node(tmp_path, prefix):
    """Factory: start_node("s2m_node", "--ros-args", ...) -> NodeProcess, stopped at teardown."""
    procs = []

    def _start(exe_name, *args, env=None):
        exe = prefix / "lib" / "s2m_ros" / exe_name
        proc = NodeProcess(exe, args, tmp_path / ("%s-%d.log" % (exe_name, len(procs))), env=env)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        if proc.proc.poll() is None:
            proc.stop()


def spin_until(node, predicate, timeout=10.0, executor=None):
    """Spin ``node`` until ``predicate()`` is true; returns the final predicate value."""
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if executor is not None:
            executor.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin_once(node, timeout_sec=0.05)
    return bool(predicate())


