"""One checker for every stage configuration of the pipeline, driven by the dataclass field types.

Each stage configuration dataclass (``PromptConfig``, ``SurfaceConfig``, ``GrabCutConfig``,
``SelectionConfig``, ``RefinementConfig``, ``ScorerConfig``, ``DetectorConfig``, ``MobileSamOptions``,
``PipelineConfig``) has a table ``RULES: ClassVar[dict]`` of ``field -> rule`` next to its fields and
calls :func:`check_fields` from ``__post_init__``. The field's **type hint** decides the type check
and the normalisation:

* ``int``: an integer, or a float without fraction (``3.0`` -> 3); never a bool, a string, NaN/inf;
* ``float``: any real number (ints -> float), never a bool or a string; NaN never, +/-inf only where
  the field's interval is closed at infinity (``"[0, inf]"``);
* ``bool``: ``true`` / ``false`` only (not 0/1, not ``"yes"``); ``str``: a string;
* ``Tuple[X, Y]`` / ``Sequence[X]``: a list or tuple of such elements (stored as a tuple);
  ``Dict[str, ...]``: a mapping with string keys; ``Optional`` / ``Union``: any member;
* a dataclass (a nested stage): an instance, or a mapping built with :func:`from_mapping` (unknown
  keys refused with the list of known ones).

The **rule** decides the range: an interval string (``"[0, 1]"``, ``"(0, inf)"``, ``"[1, inf)"``;
applied to each element of a sequence), a tuple of allowed values, a function ``value -> None or
problem`` (e.g. ``"is not odd"``), or a list of these (all must hold). Rules between fields
(``ring_max_px >= ring_min_px``) stay in the dataclass's ``__post_init__`` and raise through
:func:`bad`.

Every error is a :class:`PipelineConfigError` (a ``ValueError``) with one line
``<dotted key>: <value> <problem>``, e.g. ``prompts.max_prompts: 'many' is not an integer`` or
``prompts.nms_iou: 7.5 is not in [0, 1]``.
"""
import collections.abc
import dataclasses
import functools
import math
import numbers
import re
import typing

import numpy as np


class PipelineConfigError(ValueError):
    """An invalid pipeline configuration; the one-line message names the dotted key, the value and the rule.

    ``key``: the field (relative to ``owner``, the class that raised it, until :meth:`under` gives it
    its place in the pipeline's configuration); ``value`` and ``problem`` as shown.
    """

    def __init__(self, message, key=None, value=None, problem=None, owner=None):
        super().__init__(message)
        self.key, self.value, self.problem, self.owner = key, value, problem, owner

    @classmethod
    def bad(cls, key, value, problem, owner=None):
        where = "%s.%s" % (owner, key) if owner else key
        return cls("%s: %s %s" % (where, show(value), problem), key, value, problem, owner)

    def under(self, prefix):
        """This error with its key placed under ``prefix`` (``"prompts."``, or ``""`` for the top level);
        unchanged when it has no owner any more (already placed) or no key."""
        if self.owner is None or self.key is None:
            return self
        return type(self).bad(prefix + self.key, self.value, self.problem)


# Its public home is s2m_ros.segmentation.pipeline (re-exported there); the CLIs recognise user errors by
# that module-qualified name (s2m_ros.cli.common.USER_ERRORS).
PipelineConfigError.__module__ = "s2m_ros.segmentation.pipeline"


def show(value, limit=60):
    """``repr`` of a value on one line, shortened (a hostile file may hold a huge string)."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def bad(config, name, problem, error=PipelineConfigError):
    """The error for field ``name`` of the dataclass instance ``config`` (for rules between fields)."""
    return error.bad(name, getattr(config, name), problem, owner=type(config).__name__)


# -- types -------------------------------------------------------------------------------------------
class _WrongType(Exception):
    pass


_BOOLS = (bool, np.bool_)


def _is_sequence_hint(origin):
    return origin in (tuple, list, collections.abc.Sequence)


def _is_mapping_hint(hint, origin):
    return hint is dict or origin in (dict, collections.abc.Mapping)


def _convert(value, hint):
    """``value`` normalised to the type ``hint``; raises _WrongType when it is not of that type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        for member in args:
            if member is not type(None):
                try:
                    return _convert(value, member)
                except _WrongType:
                    pass
        raise _WrongType
    if hint is bool:
        if isinstance(value, _BOOLS):
            return bool(value)
        raise _WrongType
    if hint is int:
        if isinstance(value, _BOOLS):
            raise _WrongType
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise _WrongType
    if hint is float:
        if isinstance(value, _BOOLS) or not isinstance(value, numbers.Real):
            raise _WrongType
        return float(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _WrongType
    if _is_sequence_hint(origin):
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            raise _WrongType
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _WrongType
            return tuple(_convert(v, a) for v, a in zip(value, args))
        element = args[0] if args else typing.Any
        return tuple(_convert(v, element) for v in value)
    if _is_mapping_hint(hint, origin):
        if not isinstance(value, collections.abc.Mapping) or not all(isinstance(k, str) for k in value):
            raise _WrongType
        return dict(value)
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _WrongType
    raise TypeError("config_check: unsupported field type %r" % (hint,))  # a bug in a config class


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def type_phrase(hint):
    """``an integer``, ``a number``, ``a list of 2 numbers``, ``a string or an integer``, ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return " or ".join("null" if a is type(None) else type_phrase(a) for a in args)
    if _is_sequence_hint(origin):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "a list of %d %s" % (len(args), _PLURAL.get(args[0], "values"))
        return "a list of %s" % _PLURAL.get(args[0] if args else None, "values")
    if _is_mapping_hint(hint, origin) or dataclasses.is_dataclass(hint):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


# -- rules ---------------------------------------------------------------------------------------------
_INTERVAL = re.compile(r"\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*")


def _fmt(x):
    return str(int(x)) if math.isfinite(x) and float(x).is_integer() else repr(x)


@functools.lru_cache(maxsize=None)
def interval(text):
    """``"[0, 1]"`` -> (lo, lo_closed, hi, hi_closed, "in [0, 1]"); ``"[1, inf)"`` -> (..., ">= 1")."""
    m = _INTERVAL.fullmatch(text)
    if not m:
        raise ValueError("config_check: bad interval %r" % text)  # a bug in a RULES table
    lo, hi = float(m.group(2)), float(m.group(3))
    lo_closed, hi_closed = m.group(1) == "[", m.group(4) == "]"
    if math.isinf(hi) and math.isinf(lo):
        words = "a number"
    elif math.isinf(hi):
        words = (">= %s" if lo_closed else "> %s") % _fmt(lo)
    elif math.isinf(lo):
        words = ("<= %s" if hi_closed else "< %s") % _fmt(hi)
    else:
        words = "in %s%s, %s%s" % (m.group(1), _fmt(lo), _fmt(hi), m.group(4))
    return lo, lo_closed, hi, hi_closed, words


def _inside(v, spec):
    lo, lo_closed, hi, hi_closed, _ = spec
    return (v >= lo if lo_closed else v > lo) and (v <= hi if hi_closed else v < hi)


def _allows_inf(spec, v):
    lo, lo_closed, hi, hi_closed, _ = spec
    return (v > 0 and math.isinf(hi) and hi_closed) or (v < 0 and math.isinf(lo) and lo_closed)


def _numbers(value):
    """The numbers a rule applies to: the value itself, or a sequence's numeric elements."""
    if isinstance(value, tuple):
        return [v for v in value if isinstance(v, numbers.Real) and not isinstance(v, _BOOLS)]
    if isinstance(value, numbers.Real) and not isinstance(value, _BOOLS):
        return [value]
    return []


def _problem(value, rule):
    """None when ``value`` (already of its type) satisfies ``rule``, else the problem ("is not in [0, 1]")."""
    rules = rule if isinstance(rule, list) else ([] if rule is None else [rule])
    intervals = [interval(r) for r in rules if isinstance(r, str)]
    seq = isinstance(value, tuple)
    for v in _numbers(value):
        if isinstance(v, float) and not math.isfinite(v) and not (
                math.isinf(v) and intervals and all(_allows_inf(s, v) for s in intervals)):
            return ("has %s, which is not a finite number" % show(v)) if seq else "is not a finite number"
        for spec in intervals:
            if not _inside(v, spec):
                return ("has %s, which is not %s" % (show(v), spec[4])) if seq else "is not %s" % spec[4]
    for r in rules:
        if isinstance(r, tuple):
            if value not in r:
                return "is not one of: %s" % ", ".join(str(c) for c in r)
        elif callable(r):
            found = r(value)
            if found:
                return found
    return None


@functools.lru_cache(maxsize=None)
def _hints(cls):
    return typing.get_type_hints(cls)


def check_value(cls, name, value, error=PipelineConfigError, key=None):
    """``value`` for field ``name`` of the config dataclass ``cls``, type-checked, normalised and
    range-checked; raises ``error`` naming ``key`` (default: ``<cls>.<name>``)."""
    hint = _hints(cls)[name]
    rule = getattr(cls, "RULES", {}).get(name)

    given = value  # shown as given (not as normalised) in the message

    def fail(problem):
        if key is None:
            return error.bad(name, given, problem, owner=cls.__name__)
        return error.bad(key, given, problem)

    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, collections.abc.Mapping):
            return from_mapping(hint, value, (key or name) + ".", error=error)
        raise error("%s must be a mapping, got %s" % (key or name, show(value)), key or name, value,
                    "must be a mapping")
    try:
        value = _convert(value, hint)
    except _WrongType:
        raise fail("is not %s" % type_phrase(hint)) from None
    problem = _problem(value, rule)
    if problem:
        raise fail(problem)
    return value


def check_fields(config, error=PipelineConfigError):
    """Check and normalise, in place, every field of the dataclass instance ``config`` (its class's
    ``RULES``); call it first in ``__post_init__``."""
    cls = type(config)
    for f in dataclasses.fields(cls):
        old = getattr(config, f.name)
        new = check_value(cls, f.name, old, error=error)
        if new is not old:
            object.__setattr__(config, f.name, new)
    return config


def unknown_key(cls, key, prefix, error=PipelineConfigError):
    known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    dotted = prefix + key if isinstance(key, str) else "%s%s" % (prefix, show(key))
    return error("unknown key %r in %s (known: %s)" % (dotted, cls.__name__, ", ".join(known)), dotted)


def check_overrides(cls, data, prefix, error=PipelineConfigError):
    """A mapping of overrides of ``cls``'s fields (``scorer:``, ``detector:``, ``mobilesam:``), each value
    checked as that field; returns the normalised dict. Rules between fields are checked when the
    stage is built."""
    if not isinstance(data, collections.abc.Mapping):
        raise error("%s must be a mapping, got %s" % (prefix.rstrip("."), show(data)))
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    out = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key(cls, key, prefix, error)
        out[key] = check_value(cls, key, value, error=error, key=prefix + key)
    return out


def from_mapping(cls, data, prefix="", error=PipelineConfigError):
    """``cls(**data)`` from plain (YAML) data: unknown keys refused, nested stages from mappings, every
    error keyed ``prefix + field`` (``prefix`` ``"prompts."``, or ``""`` at the top)."""
    if not isinstance(data, collections.abc.Mapping):
        raise error("%s must be a mapping, got %s" % (prefix.rstrip(".") or cls.__name__, show(data)))
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key(cls, key, prefix, error)
        if dataclasses.is_dataclass(hints[key]) and not isinstance(value, hints[key]):
            if not isinstance(value, collections.abc.Mapping):
                raise error("%s must be a mapping, got %s" % (prefix + key, show(value)), prefix + key, value,
                            "must be a mapping")
            value = from_mapping(hints[key], value, prefix + key + ".", error=error)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except PipelineConfigError as exc:
        raise exc.under(prefix) from None
