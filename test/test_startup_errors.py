"""A node that cannot start exits 2 with ONE line "[node] invalid configuration: ..." on stderr, never a traceback.

Bad ``pipeline.config`` files (a bad value, broken YAML, a folder, a list, missing), model files that are
no ONNX model (random bytes, 0 bytes), an empty ``models.scorer`` with a model profile, and a broken,
missing or non-parameter ``--params-file``. Each node exits within about a second.
"""
import os
import subprocess

import pytest

ONNX_HINT = "s2m export espnet"


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def _pipeline_file(kind):
    def make(tmp):
        if kind == "folder":
            (tmp / "p.yaml").mkdir()
            return str(tmp / "p.yaml")
        if kind == "missing":
            return str(tmp / "nowhere" / "p.yaml")
        return _write(tmp / "p.yaml", {"bad_value": "pipeline:\n  prompts:\n    max_prompts: many\n",
                                       "unknown_key": "pipeline:\n  selection: {min_aux: 0.8}\n",
                                       "broken": "pipeline:\n  prompts: {max_prompts: [1,\n",
                                       "list": "- profile: surface+grabcut\n"}[kind])
    return lambda tmp: ["-p", "pipeline.config:=%s" % make(tmp)]


def _scorer(content):
    return lambda tmp: ["-p", "profile:=espnet+grabcut", "-p", "models.scorer:=%s" % _write(tmp / "m.onnx", content)]


def _params_file(content):
    def args(tmp):
        path = tmp / "params.yaml"
        if content is not None:
            _write(path, content)
        return ["--params-file", str(path)]
    return args


# id -> (executable, args after --ros-args from a tmp folder, text the one line must hold)
CASES = {
    "pipeline_config_bad_value": ("s2m_node", _pipeline_file("bad_value"),
                                  "prompts.max_prompts: 'many' is not an integer"),
    "pipeline_config_unknown_key": ("s2m_node", _pipeline_file("unknown_key"), "unknown key 'selection.min_aux'"),
    "pipeline_config_broken_yaml": ("s2m_node", _pipeline_file("broken"), "not valid YAML"),
    "pipeline_config_folder": ("s2m_node", _pipeline_file("folder"), "is a folder"),
    "pipeline_config_list": ("s2m_node", _pipeline_file("list"), "must hold a mapping"),
    "pipeline_config_missing": ("s2m_node", _pipeline_file("missing"), "cannot be read"),
    "scorer_corrupt_onnx": ("s2m_node", _scorer(b"\x08\x07 this is no protobuf \xff\xff\xff\xff"),
                            "not a valid ONNX model"),
    "scorer_empty_onnx": ("s2m_node", _scorer(b""), "not a valid ONNX model"),
    "scorer_parameter_empty": ("s2m_node", lambda tmp: ["-p", "profile:=espnetv2+grabcut"],
                               "scorer_model (node parameter models.scorer) is empty: profile espnetv2+grabcut"),
    "params_file_broken_yaml": ("s2m_node", _params_file("/**:\n  ros__parameters: {profile: [\n"), "not valid YAML"),
    "params_file_missing": ("s2m_node", _params_file(None), "cannot be read"),
    "params_file_not_parameters": ("s2m_node", _params_file("- 1\n- 2\n"), "Couldn't parse params file"),
    "fusion_params_file_broken_yaml": ("fusion_node", _params_file("/**:\n  ros__parameters:\n    a: {b\n"),
                                       "not valid YAML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_configuration_exits_2_with_one_line(case, start_node, prefix, tmp_path):
    # start_node: for its private ROS_DOMAIN_ID (conftest); the process is run here to see stderr alone
    exe, make_args, needle = CASES[case]
    path = prefix / "lib" / "s2m_ros" / exe
    if not os.access(str(path), os.X_OK):
        pytest.skip("%s is not installed" % path)
    proc = subprocess.run([str(path), "--ros-args"] + make_args(tmp_path), capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "invalid configuration" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("[%s] invalid configuration: " % exe) and needle in lines[0], lines[0]
    if case.startswith("scorer_") and "onnx" in case:
        assert str(tmp_path / "m.onnx") in lines[0] and ONNX_HINT in lines[0], lines[0]
    if case.startswith("pipeline_config_") or case.startswith("params_file") or case.startswith("fusion_params"):
        assert str(tmp_path) in lines[0], lines[0]  # the file is named
