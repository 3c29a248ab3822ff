"""The built package: generated messages, installed files, build description consistent with msg/."""
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_four_messages_are_importable_with_their_fields():
    from s2m_ros.msg import Obstacle, ObstacleArray, OodMask, OodMaskArray

    assert {"header", "image_width", "image_height", "masks", "scorer", "segmenter", "stage_names",
            "stage_latencies_ms"} <= set(OodMaskArray.get_fields_and_field_types())
    assert OodMaskArray.get_fields_and_field_types()["masks"] == "sequence<s2m_ros/OodMask>"
    assert OodMask.get_fields_and_field_types()["roi"] == "sensor_msgs/RegionOfInterest"
    assert OodMask.get_fields_and_field_types()["mask"] == "sensor_msgs/Image"
    assert ObstacleArray.get_fields_and_field_types()["obstacles"] == "sequence<s2m_ros/Obstacle>"
    assert {"id", "pose", "size", "velocity", "footprint", "range", "existence_probability", "hits", "age",
            "confirmed", "anomaly_score", "num_points"} <= set(Obstacle.get_fields_and_field_types())


def test_cmake_generates_exactly_the_msg_files():
    listed = set(re.findall(r'"msg/(\w+)\.msg"', (REPO / "CMakeLists.txt").read_text()))
    on_disk = {p.stem for p in (REPO / "msg").glob("*.msg")}
    assert listed == on_disk == {"OodMask", "OodMaskArray", "Obstacle", "ObstacleArray"}


def test_installed_python_package_is_the_source_tree():
    import s2m_ros

    installed = pathlib.Path(s2m_ros.__file__).parent
    assert installed != REPO / "s2m_ros", "tests must import the colcon install, not the source tree"
    for src in (REPO / "s2m_ros").rglob("*.py"):
        rel = src.relative_to(REPO / "s2m_ros")
        if str(rel) == "__init__.py":
            continue  # the generated one is installed instead
        assert (installed / rel).read_text() == src.read_text(), "stale install of %s: run make build" % rel


def test_runtime_path_never_loads_torch():
    """The nodes, the pipeline, the runtimes and the runtime CLIs run without torch (export-only)."""
    code = ("import sys\n"
            "import s2m_ros.segmentation.pipeline, s2m_ros.segmentation.model_scorer, s2m_ros.segmentation.mobilesam, "
            "s2m_ros.segmentation.detector_prompts, s2m_ros.inference.tensorrt, s2m_ros.ros.s2m_node, "
            "s2m_ros.ros.fusion_node, s2m_ros.cli.main, s2m_ros.cli.segment, s2m_ros.cli.bench, s2m_ros.cli.fit_sml\n"
            "from s2m_ros.segmentation.pipeline import S2MPipeline\n"
            "S2MPipeline()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm', 'mobile_sam'))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_readme_parameter_tables_are_the_declared_ones():
    """docs/parameters.md holds each node's table under its ``### <node>`` heading (`make docs-tables`)."""
    from s2m_ros.ros import fusion_node, s2m_node
    from s2m_ros.ros.params import markdown_table

    doc = (REPO / "docs" / "parameters.md").read_text()
    for module in (s2m_node, fusion_node):
        heading = "### %s\n" % module.NODE_NAME
        assert heading in doc, "docs/parameters.md has no heading %r" % heading.strip()
        below = doc[doc.index(heading) + len(heading):].lstrip("\n")
        table = markdown_table(module.PARAMS).rstrip("\n")
        assert below.startswith(table) and not below[len(table):].startswith("\n|"), \
            "docs/parameters.md table of %s is stale: run make docs-tables" % module.NODE_NAME
