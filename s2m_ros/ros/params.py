"""Typed, documented, validated ROS parameters declared from one table per node.

Each node lists its parameters as :class:`ParamSpec` entries; :func:`declare_all`
declares them with descriptors (type, description, numeric range, read-only),
checks the constraints ROS cannot express (choices, array lengths, custom
checks) and returns the values as a plain dict. Any violation raises
:class:`ParameterError` with a message naming the parameter, the value and
what is allowed, so a node can log it and exit instead of running misconfigured.
"""
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and the allowed values."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: Optional[Sequence[str]] = None
    length: Optional[Sequence[int]] = None  # allowed lengths of an array parameter
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns an error text or None

    def allowed(self):
        """Human-readable constraint text (used in descriptors, errors and the README table)."""
        parts = []
        if self.min is not None or self.max is not None:
            parts.append("[%s, %s]" % (self.min, self.max))
        if self.choices:
            parts.append("one of: %s" % ", ".join(self.choices))
        if self.length:
            parts.append("length %s" % " or ".join(str(n) for n in self.length))
        return "; ".join(parts)

    def validate(self, value):
        """Raise ParameterError if ``value`` violates this spec (range checked here too, for non-ROS use)."""
        if isinstance(self.default, bool) != isinstance(value, bool) or (
                isinstance(self.default, (int, float)) and not isinstance(value, (int, float))) or (
                isinstance(self.default, str) != isinstance(value, str)) or (
                isinstance(self.default, (list, tuple)) != isinstance(value, (list, tuple))):
            raise ParameterError("parameter '%s' = %r has the wrong type (expected %s like the default %r)"
                                 % (self.name, value, type(self.default).__name__, self.default))
        if isinstance(self.default, int) and not isinstance(self.default, bool) and isinstance(value, float):
            raise ParameterError("parameter '%s' = %r must be an integer" % (self.name, value))
        if isinstance(self.default, float) and isinstance(value, int):
            raise ParameterError("parameter '%s' = %r must be a floating-point number (write %r)"
                                 % (self.name, value, float(value)))
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ParameterError("parameter '%s' = %r is out of range [%s, %s]" % (self.name, value, self.min, self.max))
        if self.choices is not None and value not in self.choices:
            raise ParameterError("parameter '%s' = %r is not one of: %s" % (self.name, value, ", ".join(self.choices)))
        if self.length is not None and len(value) not in self.length:
            raise ParameterError("parameter '%s' has %d elements, expected %s"
                                 % (self.name, len(value), " or ".join(str(n) for n in self.length)))
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ParameterError("parameter '%s' = %r: %s" % (self.name, value, problem))


def defaults(specs):
    return {s.name: s.default for s in specs}


def validate_all(values, specs):
    """Validate a dict of values (e.g. from YAML) against specs, without ROS. Unknown names are errors."""
    known = {s.name: s for s in specs}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParameterError("unknown parameter(s): %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(known))))
    for name, value in values.items():
        known[name].validate(value)


def _descriptor(spec):
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    d = spec.default
    if isinstance(d, bool):
        ptype = ParameterType.PARAMETER_BOOL
    elif isinstance(d, int):
        ptype = ParameterType.PARAMETER_INTEGER
    elif isinstance(d, float):
        ptype = ParameterType.PARAMETER_DOUBLE
    elif isinstance(d, str):
        ptype = ParameterType.PARAMETER_STRING
    elif isinstance(d, (list, tuple)) and all(isinstance(v, float) for v in d):
        ptype = ParameterType.PARAMETER_DOUBLE_ARRAY
    elif isinstance(d, (list, tuple)) and all(isinstance(v, str) for v in d):
        ptype = ParameterType.PARAMETER_STRING_ARRAY
    else:
        raise TypeError("unsupported default for parameter %s: %r" % (spec.name, d))
    desc = ParameterDescriptor(name=spec.name, type=ptype, description=spec.description, read_only=True,
                               additional_constraints=spec.allowed())
    if ptype == ParameterType.PARAMETER_INTEGER and (spec.min is not None or spec.max is not None):
        desc.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    if ptype == ParameterType.PARAMETER_DOUBLE and (spec.min is not None or spec.max is not None):
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    return desc


def declare_all(node, specs):
    """Declare every spec on ``node`` and return {name: value}; raise ParameterError on any invalid value.

    Parameters given to the node (params file, command line) that no spec
    declares are reported with a warning: they are usually typos.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values = {}
    for spec in specs:
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        try:
            param = node.declare_parameter(spec.name, default, _descriptor(spec))
        except InvalidParameterValueException as exc:
            raise ParameterError("parameter '%s' rejected: %s (allowed: %s)" % (spec.name, exc, spec.allowed())) from None
        except InvalidParameterTypeException as exc:
            raise ParameterError("parameter '%s' has the wrong type: %s (expected %s, e.g. %r)"
                                 % (spec.name, exc, type(spec.default).__name__, spec.default)) from None
        value = param.value
        if isinstance(spec.default, (list, tuple)):
            value = list(value)
        spec.validate(value)
        values[spec.name] = value
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    declared = set(values) | {"use_sim_time", "start_type_description_service"}
    unknown = sorted(n for n in overrides if n not in declared and not n.startswith("qos_overrides."))
    if unknown:
        node.get_logger().warning("ignoring unknown parameter(s) %s: not declared by %s (typo in the params file?)"
                                  % (", ".join(unknown), node.get_name()))
    return values


def markdown_table(specs):
    """The parameter table for the README / --help."""
    lines = ["| parameter | default | allowed | description |", "|---|---|---|---|"]
    for s in specs:
        lines.append("| `%s` | `%r` | %s | %s |" % (s.name, s.default, s.allowed() or "", s.description))
    return "\n".join(lines)
