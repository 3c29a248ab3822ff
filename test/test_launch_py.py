"""launch/s2m.launch.py and config/s2m.rviz, checked without `launch` / `launch_ros` / `rviz2`.

`launch` and `launch_ros` are not installable here (docs ENVIRONMENT.md), so the Python
launch file runs against small stand-ins for the classes it may use. The stand-ins take
exactly the keyword arguments the real constructors take in Humble, Jazzy and Kilted
(an unknown keyword is a TypeError, as it would be for real) and record them; the
recorded description is then evaluated the way launch evaluates it (arguments in order,
IfCondition, substitutions joined, PathJoinSubstitution = os.path.join) and compared
with test/launch_xml.py's reading of launch/s2m.launch.xml for the same launch
arguments. Both files are read from the source tree (the repository's launch/ and
config/ mirror the installed share), so no rebuild is needed to check them.
"""
import importlib
import importlib.util
import os
import pathlib
import sys
import types
import xml.etree.ElementTree as ET

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from launch_xml import parse

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_PY = REPO / "launch" / "s2m.launch.py"
LAUNCH_XML = REPO / "launch" / "s2m.launch.xml"
RVIZ = REPO / "config" / "s2m.rviz"
SHARE = "/opt/share/s2m_ros"  # where the stand-in FindPackageShare says the package lives


# --------------------------------------------------------------------------- stand-ins

class Fake:
    """Records the positional and keyword arguments of a constructor call."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return "%s(%r, %r)" % (type(self).__name__, self.args, self.kwargs)


# Keyword arguments of launch.Action / launch.actions.ExecuteProcess that Node passes on
# (the subset present in Humble, Jazzy and Kilted).
EXECUTE_PROCESS_KWARGS = {"condition", "output", "emulate_tty", "respawn", "respawn_delay", "additional_env",
                          "env", "cwd", "sigterm_timeout", "sigkill_timeout", "prefix", "shell", "log_cmd",
                          "on_exit", "cached_output", "output_format"}


class LaunchDescription(Fake):
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        super().__init__(initial_entities, deprecated_reason=deprecated_reason)
        self.entities = list(initial_entities or [])


class DeclareLaunchArgument(Fake):
    def __init__(self, name, *, default_value=None, description=None, choices=None, condition=None):
        super().__init__(name, default_value=default_value, description=description, choices=choices,
                         condition=condition)
        self.name = name


class LaunchConfiguration(Fake):
    def __init__(self, variable_name, *, default=None):
        super().__init__(variable_name, default=default)
        self.variable_name = variable_name


class PathJoinSubstitution(Fake):
    def __init__(self, substitutions):
        super().__init__(substitutions)
        self.substitutions = list(substitutions)


class IfCondition(Fake):
    def __init__(self, predicate_expression):
        super().__init__(predicate_expression)
        self.predicate_expression = predicate_expression


class FindPackageShare(Fake):
    def __init__(self, package):
        super().__init__(package)
        self.package = package


class Node(Fake):
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                 remappings=None, ros_arguments=None, arguments=None, **kwargs):
        unknown = set(kwargs) - EXECUTE_PROCESS_KWARGS
        if unknown:
            raise TypeError("Node() got unexpected keyword argument(s) %s" % sorted(unknown))
        if parameters is not None and not isinstance(parameters, list):
            raise TypeError("Node(parameters=...) must be a list")  # launch_ros ensure_argument_type
        super().__init__(executable=executable, package=package, name=name, namespace=namespace,
                         exec_name=exec_name, parameters=parameters, remappings=remappings,
                         ros_arguments=ros_arguments, arguments=arguments, **kwargs)


FAKE_MODULES = {
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument},
    "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration,
                             "PathJoinSubstitution": PathJoinSubstitution},
    "launch.conditions": {"IfCondition": IfCondition},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node},
    "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
}


def load_launch_py(monkeypatch):
    """Run launch/s2m.launch.py against the stand-ins; return its LaunchDescription."""
    for name, attrs in FAKE_MODULES.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        if "." not in name:
            module.__path__ = []  # a package, so `launch.actions` etc. import
        monkeypatch.setitem(sys.modules, name, module)
    for name, attrs in FAKE_MODULES.items():
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, sys.modules[name])
    spec = importlib.util.spec_from_file_location("s2m_launch_under_test", LAUNCH_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # an import outside the stand-ins fails here
    return module.generate_launch_description()


# --------------------------------------------------------------------------- evaluation

def resolve(value, config):
    """A substitution (or list of them) to its string, as launch performs it."""
    if isinstance(value, str):
        return value
    if isinstance(value, LaunchConfiguration):
        if value.variable_name not in config:
            raise KeyError("LaunchConfiguration(%r) has no declared argument" % value.variable_name)
        return config[value.variable_name]
    if isinstance(value, FindPackageShare):
        assert value.package == "s2m_ros", value.package
        return SHARE
    if isinstance(value, PathJoinSubstitution):
        return os.path.join(*[resolve(part, config) for part in value.substitutions])
    if isinstance(value, (list, tuple)):
        return "".join(resolve(part, config) for part in value)
    raise TypeError("not a substitution: %r" % (value,))


def condition_true(condition, config):
    if condition is None:
        return True
    assert isinstance(condition, IfCondition), condition
    text = resolve(condition.predicate_expression, config).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError("condition %r is not a boolean" % text)


def evaluate(description, overrides=None):
    """(args, nodes) in test/launch_xml.py's form: what the description launches."""
    overrides = dict(overrides or {})
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    unknown = set(overrides) - {d.name for d in declared}
    assert not unknown, unknown
    config = {}
    for decl in declared:  # in order: a default may use an earlier argument
        config[decl.name] = overrides[decl.name] if decl.name in overrides else \
            resolve(decl.kwargs["default_value"], config)
    nodes = []
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            continue
        assert isinstance(entity, Node), entity
        kw = entity.kwargs
        if not condition_true(kw.get("condition"), config):
            continue
        node = {"pkg": resolve(kw["package"], config), "exec": resolve(kw["executable"], config),
                "name": resolve(kw["name"] or "", config), "namespace": resolve(kw["namespace"] or "", config),
                "output": kw.get("output", ""), "args": [resolve(a, config) for a in kw["arguments"] or []],
                "params_files": [], "params": {}, "remaps": []}
        for entry in kw["parameters"] or []:
            if isinstance(entry, dict):
                node["params"].update({key: resolve(v, config) for key, v in entry.items()})
            else:
                node["params_files"].append(resolve(entry, config))
        node["remaps"] = [(resolve(a, config), resolve(b, config)) for a, b in kw["remappings"] or []]
        nodes.append(node)
    return config, nodes


def xml_reading(overrides=None):
    return parse(LAUNCH_XML, lambda pkg: SHARE if pkg == "s2m_ros" else pytest.fail(pkg), overrides)


COMPARED = ("pkg", "exec", "name", "namespace", "output", "args", "params_files", "params", "remaps")


def comparable(nodes):
    return [{key: node[key] for key in COMPARED} for node in nodes]


@pytest.fixture
def description(monkeypatch):
    return load_launch_py(monkeypatch)


# --------------------------------------------------------------------------- launch file

def test_declared_arguments_equal_the_xml(description):
    xml_args = [(el.get("name"), el.get("description")) for el in ET.parse(LAUNCH_XML).getroot().findall("arg")]
    py_args = [(d.name, d.kwargs["description"]) for d in description.entities if isinstance(d, DeclareLaunchArgument)]
    assert py_args == xml_args
    assert [n for n, _ in py_args] == ["namespace", "camera_topic", "camera_info_topic", "lidar_topic", "odom_topic", "use_sim_time",
                                       "s2m_params_file", "fusion_params_file", "rviz", "rviz_config"]
    config, _ = evaluate(description)
    xml_config, _ = xml_reading()
    assert config == xml_config
    assert config["rviz"] == "false"
    assert config["rviz_config"] == SHARE + "/config/s2m.rviz"
    assert config["s2m_params_file"] == SHARE + "/config/s2m.yaml"


def test_default_nodes_equal_the_xml(description):
    _, nodes = evaluate(description)
    _, xml_nodes = xml_reading()
    assert comparable(nodes) == comparable(xml_nodes)
    assert [(n["pkg"], n["exec"], n["name"]) for n in nodes] == [("s2m_ros", "s2m_node", "s2m_node"),
                                                                 ("s2m_ros", "fusion_node", "fusion_node")]
    s2m, fusion = nodes
    assert s2m["remaps"] == [("image", "/camera/image_raw"), ("image/compressed", "/camera/image_raw/compressed"),
                             ("camera_info", "/camera/camera_info")]
    assert fusion["remaps"] == [("points", "/lidar/points"), ("camera_info", "/camera/camera_info"),
                                ("odom", "/odom")]
    assert s2m["params_files"] == [SHARE + "/config/s2m.yaml"]
    assert fusion["params_files"] == [SHARE + "/config/fusion.yaml"]
    assert s2m["params"] == fusion["params"] == {"use_sim_time": "false"}


def test_rviz_node_is_conditional_on_the_rviz_argument(description):
    rviz = [e for e in description.entities if isinstance(e, Node) and e.kwargs["package"] == "rviz2"]
    assert len(rviz) == 1
    kw = rviz[0].kwargs
    assert kw["executable"] == "rviz2"
    assert isinstance(kw["condition"], IfCondition)
    assert isinstance(kw["condition"].predicate_expression, LaunchConfiguration)
    assert kw["condition"].predicate_expression.variable_name == "rviz"
    assert kw["arguments"][0] == "-d" and len(kw["arguments"]) == 2
    assert kw["arguments"][1].variable_name == "rviz_config"

    _, nodes = evaluate(description, {"rviz": "true", "use_sim_time": "true"})
    assert [n["exec"] for n in nodes] == ["s2m_node", "fusion_node", "rviz2"]
    assert nodes[2]["args"] == ["-d", SHARE + "/config/s2m.rviz"]
    assert nodes[2]["params"] == {"use_sim_time": "true"}
    assert comparable(nodes) == comparable(xml_reading({"rviz": "true", "use_sim_time": "true"})[1])
    with pytest.raises(ValueError):
        evaluate(description, {"rviz": "yes"})  # launch rejects a non-boolean condition, like the XML reading


def test_the_stand_ins_reject_what_the_real_classes_reject():
    with pytest.raises(TypeError):
        Node(executable="x", node_executable="x")  # Dashing-era keyword, gone since Foxy
    with pytest.raises(TypeError):
        Node(executable="x", parameters={"a": 1})
    with pytest.raises(TypeError):
        DeclareLaunchArgument("x", default="y")


_name = st.text("abcdefghij_", min_size=1, max_size=6).filter(lambda s: not s.startswith("_"))
_topic = st.lists(_name, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
_path = st.lists(st.text("abc xyz_.", min_size=1, max_size=6), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts))
_overrides = st.fixed_dictionaries({}, optional={
    "namespace": st.one_of(st.just(""), _name),
    "camera_topic": _topic, "camera_info_topic": _topic, "lidar_topic": _topic, "odom_topic": _topic,
    "use_sim_time": st.sampled_from(["true", "false", "True", "1"]),
    "s2m_params_file": _path, "fusion_params_file": _path,
    "rviz": st.sampled_from(["true", "false", "True", "FALSE", "1", "0"]),
    "rviz_config": _path,
})


@settings(max_examples=150, deadline=None)
@given(overrides=_overrides)
def test_python_and_xml_launch_the_same_for_any_arguments(overrides):
    with pytest.MonkeyPatch.context() as monkeypatch:
        description = load_launch_py(monkeypatch)
    config, nodes = evaluate(description, overrides)
    xml_config, xml_nodes = xml_reading(overrides)
    assert config == xml_config
    assert comparable(nodes) == comparable(xml_nodes)
    assert ("rviz2" in [n["exec"] for n in nodes]) == (overrides.get("rviz", "false").lower() in ("true", "1"))


def test_with_real_launch_ros_when_installed():
    """On a machine with ROS 2 (not this one): the real classes accept the file."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installable here (ENVIRONMENT.md)")
    spec = importlib.util.spec_from_file_location("s2m_launch_real", LAUNCH_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = [a.name for a in description.get_launch_arguments()]
    assert names == [el.get("name") for el in ET.parse(LAUNCH_XML).getroot().findall("arg")]


# --------------------------------------------------------------------------- RViz config

DISPLAY_TYPES = {  # RViz display class -> the message type it subscribes to
    "rviz_default_plugins/Image": "sensor_msgs/Image",
    "rviz_default_plugins/PointCloud2": "sensor_msgs/PointCloud2",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/MarkerArray",
    "rviz_default_plugins/Grid": None,
}
QOS_VALUES = {"Reliability Policy": {"Reliable", "Best Effort", "System Default"},
              "Durability Policy": {"Volatile", "Transient Local", "System Default"},
              "History Policy": {"Keep Last", "Keep All", "System Default"}}


@pytest.fixture(scope="module")
def rviz():
    data = yaml.safe_load(RVIZ.read_text())
    assert isinstance(data, dict)
    return data


def _displays(displays):
    for display in displays:
        yield display
        yield from _displays(display.get("Displays", []))  # rviz_common/Group


def launched_topics(overrides=None):
    """Absolute topic -> [(node, direction, type)] for the nodes the launch file starts."""
    _, nodes = xml_reading(overrides)
    topics = {}
    for node in nodes:
        if node["pkg"] != "s2m_ros":
            continue
        module = importlib.import_module("s2m_ros.ros." + node["exec"])
        remaps = dict(node["remaps"])
        ns = "/" + node["namespace"].strip("/") if node["namespace"].strip("/") else ""
        for name, direction, msg_type, _ in module.TOPICS:
            full = remaps.get(name, name if name.startswith("/") else ns + "/" + name)
            topics.setdefault(full, []).append((node["exec"], direction, msg_type))
    return topics


def test_rviz_config_has_the_rviz2_layout(rviz):
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(rviz)
    assert all(p["Class"].startswith("rviz_common/") for p in rviz["Panels"])
    manager = rviz["Visualization Manager"]
    frame = manager["Global Options"]["Fixed Frame"]
    assert isinstance(frame, str) and frame and not frame.startswith("/"), "tf2 frame ids have no leading /"
    assert manager["Views"]["Current"]["Class"] in ("rviz_default_plugins/Orbit", "rviz_default_plugins/TopDownOrtho")
    for view in [manager["Views"]["Current"]] + list(manager["Views"].get("Saved") or []):
        assert view["Class"].startswith("rviz_default_plugins/")
    for tool in manager["Tools"]:
        assert tool["Class"].startswith("rviz_default_plugins/")


def test_rviz_displays_show_topics_the_launched_nodes_use(rviz):
    topics = launched_topics()
    shown = {}
    for display in _displays(rviz["Visualization Manager"]["Displays"]):
        cls = display["Class"]
        assert cls in DISPLAY_TYPES, "display class %s is not one this test knows" % cls
        assert isinstance(display["Enabled"], bool) and display["Name"]
        if DISPLAY_TYPES[cls] is None:
            continue
        topic = display["Topic"]
        for key, allowed in QOS_VALUES.items():
            assert topic[key] in allowed, (display["Name"], key)
        name = topic["Value"]
        assert name in topics, "%s shows %s, which no launched node uses (%s)" % (display["Name"], name, sorted(topics))
        assert {t for _, _, t in topics[name]} == {DISPLAY_TYPES[cls]}, (name, topics[name])
        if all(direction == "sub" for _, direction, _ in topics[name]):
            # published outside this package (sensor drivers, often best effort): a reliable
            # RViz subscription would receive nothing from a best-effort publisher
            assert topic["Reliability Policy"] == "Best Effort", name
        shown[name] = cls
    markers = [t for t, uses in topics.items() if ("fusion_node", "pub", "visualization_msgs/MarkerArray") in uses]
    assert markers == ["/obstacle_markers"]
    assert {"/ood/overlay", "/ood/instance_image", "/lidar/points", "/obstacle_markers"} <= set(shown)


def test_rviz_topics_follow_the_launch_defaults(rviz):
    """The shown topics are the default-namespace ones; another namespace moves the node outputs away."""
    shown = {d["Topic"]["Value"] for d in _displays(rviz["Visualization Manager"]["Displays"]) if "Topic" in d}
    moved = launched_topics({"namespace": "apron_a", "lidar_topic": "/lidar_top/points"})
    assert "/apron_a/ood/overlay" in moved and "/apron_a/obstacle_markers" in moved
    assert not shown & set(moved)
