"""A small interpreter for the subset of ROS 2 XML launch files this package ships.

`ros2 launch` (launch / launch_ros) is not installable here, so the tests turn
launch/s2m.launch.xml into the exact command lines launch_ros would run
(`<exe> [args] --ros-args -r __node:=NAME -r __ns:=NS --params-file F -p k:=v -r a:=b`)
and check every reference in it. Anything outside the supported subset is an
error, so an unsupported construct cannot slip through unchecked.
"""
import re
import xml.etree.ElementTree as ET

_SUBST = re.compile(r"\$\((\S+)\s+([^)]*)\)")
NODE_ATTRS = {"pkg", "exec", "name", "namespace", "output", "args", "if", "unless"}


class LaunchError(Exception):
    pass


def substitute(text, args, find_pkg_share):
    def repl(m):
        kind, value = m.group(1), m.group(2).strip()
        if kind == "var":
            if value not in args:
                raise LaunchError("$(var %s) used but no <arg name=%r> is declared" % (value, value))
            return args[value]
        if kind == "find-pkg-share":
            return find_pkg_share(value)
        raise LaunchError("unsupported substitution $(%s ...)" % kind)

    return _SUBST.sub(repl, text)


def split_cmdline(text):
    """Split an `args` attribute into words the way launch does: on the whitespace of
    the literal text only, so `$(var x)` stays whole and its value (a path with spaces)
    remains one argument."""
    words, current, pos = [], "", 0
    for m in list(_SUBST.finditer(text)) + [None]:
        literal = text[pos:m.start() if m else len(text)]
        parts = re.split(r"\s+", literal)
        current += parts[0]
        for part in parts[1:]:
            if current:
                words.append(current)
            current = part
        if m is None:
            break
        current += m.group(0)
        pos = m.end()
    if current:
        words.append(current)
    return words


def _truthy(text):
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise LaunchError("condition value %r is not a boolean" % text)


def parse(path, find_pkg_share, overrides=None):
    """Return (args, nodes): declared args with defaults, and per node a dict with
    pkg, exec, name, namespace, output, args (the node's own arguments), params_files, params,
    remaps, ros_args, and argv = args + ros_args. Nodes whose `if`/`unless` condition
    is false are left out."""
    root = ET.parse(path).getroot()
    if root.tag != "launch":
        raise LaunchError("root element must be <launch>")
    args = {}
    declared = {}
    for el in root.findall("arg"):
        name = el.get("name")
        declared[name] = el
        if "default" not in el.attrib:
            raise LaunchError("<arg %s> has no default" % name)
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise LaunchError("unknown launch argument(s): %s" % sorted(unknown))
    for name, el in declared.items():
        args[name] = overrides[name] if name in overrides else substitute(el.get("default"), args, find_pkg_share)
    nodes = []
    for el in root:
        if el.tag == "arg":
            continue
        if el.tag != "node":
            raise LaunchError("unsupported element <%s>" % el.tag)
        extra = set(el.attrib) - NODE_ATTRS
        if extra:
            raise LaunchError("unsupported <node> attribute(s) %s" % sorted(extra))
        if "if" in el.attrib and not _truthy(substitute(el.get("if"), args, find_pkg_share)):
            continue
        if "unless" in el.attrib and _truthy(substitute(el.get("unless"), args, find_pkg_share)):
            continue
        node = {key: substitute(el.get(key, ""), args, find_pkg_share) for key in ("pkg", "exec", "name", "namespace")}
        node["output"] = el.get("output", "")
        node["args"] = [substitute(word, args, find_pkg_share) for word in split_cmdline(el.get("args", ""))]
        node.update(params_files=[], params={}, remaps=[])
        for child in el:
            if child.tag == "param" and "from" in child.attrib:
                node["params_files"].append(substitute(child.get("from"), args, find_pkg_share))
            elif child.tag == "param":
                node["params"][child.get("name")] = substitute(child.get("value"), args, find_pkg_share)
            elif child.tag == "remap":
                node["remaps"].append((substitute(child.get("from"), args, find_pkg_share),
                                       substitute(child.get("to"), args, find_pkg_share)))
            else:
                raise LaunchError("unsupported <%s> inside <node>" % child.tag)
        ros_args = ["--ros-args"]
        if node["name"]:
            ros_args += ["-r", "__node:=" + node["name"]]
        if node["namespace"]:
            ros_args += ["-r", "__ns:=" + (node["namespace"] if node["namespace"].startswith("/")
                                           else "/" + node["namespace"])]
        for f in node["params_files"]:
            ros_args += ["--params-file", f]
        for k, v in node["params"].items():
            ros_args += ["-p", "%s:=%s" % (k, v)]
        for a, b in node["remaps"]:
            ros_args += ["-r", "%s:=%s" % (a, b)]
        node["ros_args"] = ros_args
        node["argv"] = node["args"] + ros_args  # what launch_ros puts after the executable
        nodes.append(node)
    return args, nodes
