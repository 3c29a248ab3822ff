"""The house rules of the package, read from the source with ``ast`` (every import, also inside functions):

- no import circles between modules;
- each room imports only the rooms below it (``ROOMS``);
- nothing below the shells (``ros``, ``bags``, ``cli``) imports rclpy, ROS messages or rosbags;
- only ``export`` imports torch / torchvision / timm / mobile_sam; only ``inference.tensorrt`` TensorRT / CUDA;
- at most three modules at the top of ``s2m_ros/`` besides ``__init__.py``.
"""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PKG = REPO / "s2m_ros"

# room -> the rooms it may import (besides itself). Top-level modules count as rooms of their own.
BASE = {"types", "config", "files"}
ROOMS = {
    "types": set(), "config": set(), "files": set(),
    "inference": BASE,
    "segmentation": BASE | {"inference"},
    "obstacles": BASE,
    "sim": BASE | {"obstacles"},
    "eval": BASE | {"segmentation", "obstacles"},
    "bench": BASE | {"inference", "segmentation", "obstacles", "sim"},
    "ros": BASE | {"msg", "inference", "segmentation", "obstacles"},
    "export": BASE | {"inference", "segmentation", "bench"},
    "bags": BASE | {"msg", "inference", "segmentation", "obstacles", "sim", "eval", "ros"},
    "cli": BASE | {"msg", "inference", "segmentation", "obstacles", "sim", "eval", "bench", "ros", "bags", "export"},
}
SHELLS = {"ros", "bags", "cli"}
ROS_MODULES = ("rclpy", "rcl_interfaces", "rosgraph_msgs", "builtin_interfaces", "std_msgs", "sensor_msgs",
               "geometry_msgs", "nav_msgs", "visualization_msgs", "diagnostic_msgs", "tf2_msgs", "ament_index_python",
               "rosbags", "s2m_ros.msg")
TORCH_MODULES = ("torch", "torchvision", "timm", "mobile_sam")
GPU_MODULES = ("tensorrt", "cuda", "pycuda")


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path):
    """Every module name ``path`` imports (absolute; relative imports resolved), with the line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            # "from s2m_ros.x import y" where y is a submodule imports s2m_ros.x.y
            out += [(mod + "." + a.name, node.lineno) for a in node.names]
    return out


def package_graph():
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    modules["s2m_ros.msg"] = None  # generated at build time
    graph, where = {}, {}
    for name, path in modules.items():
        if path is None:
            continue
        deps = set()
        for mod, line in imports_of(path):
            if mod in modules and mod != name and mod != "s2m_ros":
                deps.add(mod)
                where[(name, mod)] = line
        graph[name] = deps
    return modules, graph, where


def room(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def strongly_connected(graph):
    """Tarjan's components of more than one module (the import circles)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    _, graph, where = package_graph()
    circles = strongly_connected(graph)
    described = [" -> ".join("%s (line %s)" % (m, where.get((m, n), "?"))
                             for m, n in zip(c, c[1:] + c[:1])) for c in circles]
    assert not circles, "import circles: %s" % described


def test_every_package_import_names_an_existing_module():
    modules = {module_name(p) for p in PKG.rglob("*.py")} | {"s2m_ros.msg"}
    bad = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                bad.append("%s:%d: relative import (write the absolute module)" % (path.relative_to(REPO), node.lineno))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s2m_ros"):
                if node.module not in modules:
                    bad.append("%s:%d: no module %s" % (path.relative_to(REPO), node.lineno, node.module))
    assert not bad, bad


def test_every_room_is_known_and_imports_only_the_rooms_below_it():
    modules, graph, where = package_graph()
    rooms = {room(m) for m in modules if m not in ("s2m_ros", "s2m_ros.msg")}
    assert rooms <= set(ROOMS), "rooms without a rule in ROOMS: %s" % sorted(rooms - set(ROOMS))
    bad = []
    for name, deps in graph.items():
        r = room(name)
        if r == "__init__":
            continue
        for d in deps:
            if room(d) != r and room(d) not in ROOMS[r]:
                bad.append("%s imports %s (line %d)" % (name, d, where[(name, d)]))
    assert not bad, bad


@pytest.mark.parametrize("rule", ["ros", "torch", "gpu"])
def test_third_party_imports_stay_in_their_rooms(rule):
    forbidden = {"ros": ROS_MODULES, "torch": TORCH_MODULES, "gpu": GPU_MODULES}[rule]
    bad = []
    for path in PKG.rglob("*.py"):
        name = module_name(path)
        r = room(name)
        allowed = {"ros": r in SHELLS, "torch": r == "export", "gpu": name == "s2m_ros.inference.tensorrt"}[rule]
        if allowed:
            continue
        for mod, line in imports_of(path):
            if (rule == "ros" and mod == "s2m_ros.msg") or mod.split(".")[0] in forbidden:
                bad.append("%s:%d imports %s" % (path.relative_to(REPO), line, mod))
    assert not bad, bad


def test_at_most_three_modules_at_the_top():
    top = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 3, top
    assert (PKG / "__init__.py").read_text() == "", "keep s2m_ros/__init__.py empty (the generated one is installed)"
