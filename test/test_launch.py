"""launch/s2m.launch.xml checked against the installed package (no `ros2 launch` here).

The launch file is interpreted (test/launch_xml.py) into the command lines
launch_ros would run; every executable, params file, parameter and remapping
it names is checked, and the resulting command lines are started for real.
"""
import importlib
import os

import pytest
import yaml

from launch_xml import LaunchError, parse

LAUNCH = "s2m.launch.xml"


def _find_pkg_share(share):
    def find(pkg):
        if pkg != "s2m_ros":
            raise LaunchError("launch file refers to another package's share: %s" % pkg)
        return str(share)
    return find


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = prefix + str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _yaml_params(path):
    data = yaml.safe_load(open(path))
    assert list(data) == ["/**"], "params files apply to any node name/namespace"
    return _flatten(data["/**"]["ros__parameters"])


@pytest.fixture
def launch(share):
    path = share / "launch" / LAUNCH
    assert path.is_file(), "launch file not installed"
    return path


def test_launch_file_nodes_exist_and_are_executable(launch, share, prefix):
    args, nodes = parse(launch, _find_pkg_share(share))
    assert [(n["pkg"], n["exec"]) for n in nodes] == [("s2m_ros", "s2m_node"), ("s2m_ros", "fusion_node")]
    for node in nodes:
        exe = prefix / "lib" / "s2m_ros" / node["exec"]
        assert exe.is_file() and os.access(exe, os.X_OK), exe


def test_every_launch_argument_is_described_and_used(launch, share):
    import xml.etree.ElementTree as ET

    text = launch.read_text()
    for el in ET.parse(launch).getroot().findall("arg"):
        assert el.get("description"), "arg %s needs a description" % el.get("name")
        assert "$(var %s)" % el.get("name") in text, "arg %s is never used" % el.get("name")


def test_params_files_match_declared_parameters(launch, share):
    from s2m_ros.ros.params import validate_all

    _, nodes = parse(launch, _find_pkg_share(share))
    for node in nodes:
        module = importlib.import_module("s2m_ros.ros." + node["exec"])
        declared = {s.name: s.default for s in module.PARAMS}
        assert node["params_files"], "%s gets no params file" % node["exec"]
        for path in node["params_files"]:
            assert os.path.isfile(path), path
            values = _yaml_params(path)
            validate_all(values, module.PARAMS)  # every key declared, every value valid
            # the shipped YAML documents every parameter with its default
            assert values == declared, "%s differs from the node's declared defaults" % path
        assert set(node["params"]) <= {"use_sim_time"}


def test_remappings_name_topics_the_nodes_use(launch, share):
    _, nodes = parse(launch, _find_pkg_share(share))
    for node in nodes:
        module = importlib.import_module("s2m_ros.ros." + node["exec"])
        topics = {t[0] for t in module.TOPICS}
        for src, dst in node["remaps"]:
            assert src in topics, "%s remaps %r, which it does not use" % (node["exec"], src)
            assert dst.startswith("/"), "remap targets are absolute topics: %s" % dst


def test_unknown_launch_argument_is_an_error(launch, share):
    with pytest.raises(LaunchError):
        parse(launch, _find_pkg_share(share), {"camera": "/x"})


def test_package_xml_declares_what_the_launch_file_needs():
    import pathlib
    import xml.etree.ElementTree as ET

    root = ET.parse(pathlib.Path(__file__).resolve().parents[1] / "package.xml").getroot()
    assert root.get("format") == "3"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    assert {"launch", "launch_ros", "launch_xml", "rclpy", "sensor_msgs", "diagnostic_msgs",
            "visualization_msgs", "rosidl_default_runtime", "python3-numpy", "python3-opencv"} <= exec_deps


def test_launched_command_lines_run_with_namespace_and_remaps(launch, share, start_node, rclpy_context):
    from s2m_ros.cli.probe import Probe

    overrides = {"namespace": "apron_a", "camera_topic": "/cam_front/image_raw",
                 "lidar_topic": "/lidar_top/points", "camera_info_topic": "/cam_front/camera_info"}
    _, nodes = parse(launch, _find_pkg_share(share), overrides)
    procs = [start_node(n["exec"], *n["ros_args"]) for n in nodes]
    for proc in procs:
        assert proc.wait_for_output("started:"), proc.output()
    probe = Probe(rclpy_context)
    try:
        node = probe.node

        def topic_nodes(topic, subs=True):
            infos = (node.get_subscriptions_info_by_topic if subs else node.get_publishers_info_by_topic)(topic)
            return sorted((i.node_namespace, i.node_name) for i in infos)

        expected = {
            ("/cam_front/image_raw", True): [("/apron_a", "s2m_node")],
            ("/lidar_top/points", True): [("/apron_a", "fusion_node")],
            ("/cam_front/camera_info", True): [("/apron_a", "fusion_node")],
            ("/apron_a/ood/masks", True): [("/apron_a", "fusion_node")],
            ("/apron_a/ood/masks", False): [("/apron_a", "s2m_node")],
            ("/apron_a/obstacles", False): [("/apron_a", "fusion_node")],
        }
        assert probe.spin_until(lambda: all(topic_nodes(t, s) == v for (t, s), v in expected.items())), {
            k: topic_nodes(*k) for k in expected}
    finally:
        probe.close()
    for proc in procs:
        assert proc.stop() == 0


def test_rviz_argument_adds_the_rviz2_command_line():
    """rviz:=true adds rviz2 with the package's display config. rviz2 is not installable
    here, so only its command line is checked (the source tree: the installed share
    mirrors its launch/ and config/)."""
    import pathlib

    repo = pathlib.Path(__file__).resolve().parents[1]
    source = repo / "launch" / LAUNCH

    def find(pkg):
        assert pkg == "s2m_ros", pkg
        return str(repo)

    _, nodes = parse(source, find)
    assert [n["exec"] for n in nodes] == ["s2m_node", "fusion_node"], "rviz defaults to off"
    _, nodes = parse(source, find, {"rviz": "true", "use_sim_time": "true"})
    assert [(n["pkg"], n["exec"]) for n in nodes] == [("s2m_ros", "s2m_node"), ("s2m_ros", "fusion_node"),
                                                      ("rviz2", "rviz2")]
    config = str(repo / "config" / "s2m.rviz")
    assert os.path.isfile(config)
    assert ["rviz2"] + nodes[2]["argv"] == ["rviz2", "-d", config, "--ros-args", "-r", "__node:=rviz2",
                                            "-p", "use_sim_time:=true"]
    _, nodes = parse(source, find, {"rviz": "1", "rviz_config": "/my configs/apron.rviz"})
    assert nodes[2]["args"] == ["-d", "/my configs/apron.rviz"], "a path with spaces stays one argument"
    with pytest.raises(LaunchError):
        parse(source, find, {"rviz": "yes"})
