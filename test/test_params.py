"""ParamSpec validation (ROS-free) and the node parameter tables."""
import pytest

from s2m_ros.ros import fusion_node, s2m_node
from s2m_ros.ros.params import ParameterError, ParamSpec, defaults, markdown_table, validate_all


def test_range_choice_length_and_type_checks():
    depth = ParamSpec("depth", 1, "d", min=1, max=10)
    depth.validate(1)
    depth.validate(10)
    for bad in (0, 11, 1.5, "3", True):
        with pytest.raises(ParameterError, match="'depth'"):
            depth.validate(bad)
    mode = ParamSpec("mode", "a", "m", choices=("a", "b"))
    mode.validate("b")
    with pytest.raises(ParameterError, match="not one of: a, b"):
        mode.validate("c")
    vec = ParamSpec("t", [0.0, 0.0, 0.0], "t", length=(3,))
    vec.validate([1.0, 2.0, 3.0])
    with pytest.raises(ParameterError, match="expected 3"):
        vec.validate([1.0])
    ratio = ParamSpec("r", 0.5, "r", min=0.0, max=1.0)
    with pytest.raises(ParameterError, match="floating-point"):
        ratio.validate(1)


def test_custom_check_message_names_parameter():
    spec = ParamSpec("profile", "surface+grabcut", "p", check=s2m_node._profile_problem)
    spec.validate("espnetv2+mobilesam")
    with pytest.raises(ParameterError, match="'profile' = 'surface'"):
        spec.validate("surface")


def test_validate_all_rejects_unknown_names():
    with pytest.raises(ParameterError, match="unknown parameter.*time_tolerence_s"):
        validate_all({"time_tolerence_s": 0.1}, fusion_node.PARAMS)


@pytest.mark.parametrize("module", [s2m_node, fusion_node])
def test_node_defaults_are_valid_and_names_unique(module):
    names = [s.name for s in module.PARAMS]
    assert len(names) == len(set(names))
    validate_all(defaults(module.PARAMS), module.PARAMS)
    table = markdown_table(module.PARAMS)
    assert table.count("\n") == len(names) + 1


def test_fusion_extrinsics_matrix_must_be_rigid():
    spec = {s.name: s for s in fusion_node.PARAMS}["extrinsics.matrix"]
    identity = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    spec.validate(identity)
    spec.validate([0.0])
    scaled = list(identity)
    scaled[0] = 2.0
    with pytest.raises(ParameterError, match="not a rotation"):
        spec.validate(scaled)
    with pytest.raises(ParameterError, match="expected 1 or 16"):
        spec.validate(identity[:9])
