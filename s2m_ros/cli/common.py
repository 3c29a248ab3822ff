"""What every `s2m` subcommand shares: the error policy, one-line messages, skipped-item reports.

The policy (issue 19, "hostile input never kills a node or ends a batch"):

- A **bad item** (one image, one frame, one label, one bag message) is skipped and counted; the command
  goes on, writes its outputs (with the skipped items under ``"skipped"``: ``[{"item", "reason",
  "error"}]``) and reports them at the end on stderr. Exit 0 - unless nothing at all was usable
  (every input image of ``segment`` / ``fit-sml`` / ``eval`` skipped): then the outputs are still
  written and the exit code is 2.
- A **user error** (bad argument, missing or unreadable input, malformed config or YAML, output not
  writable) is ONE line on stderr, ``s2m <command>: error: <what>``, and exit code 2; never a traceback.
  User errors are the package's own error types (:data:`USER_ERRORS`: configuration, parameter,
  dataset, bag and model-file errors, :class:`UsageError`), ``OSError`` (files and folders) and YAML
  errors. ``S2M_DEBUG=1`` prints the traceback too.
- Anything else is a **bug**: it is NOT turned into exit 2. The command prints
  ``s2m <command>: internal error (a bug; please report it with the traceback below)``, the traceback,
  and exits 1.
- Ctrl-C: one line, exit 130.
"""
import argparse
import functools
import os
import sys
import traceback

#: Exception classes (by module-qualified name, so nothing is imported to check) that are user errors.
USER_ERRORS = frozenset((
    "s2m_ros.cli.common.UsageError",
    "s2m_ros.segmentation.pipeline.PipelineConfigError",
    "s2m_ros.segmentation.model_scorer.ScorerConfigError",
    "s2m_ros.ros.params.ParameterError",
    "s2m_ros.eval.datasets.DatasetError",
    "s2m_ros.bags.storage.BagError",
    "s2m_ros.inference.model_files.ModelFileError",
    "s2m_ros.export.mobilesam.CheckpointError",
    "yaml.error.YAMLError",
    "builtins.OSError",
    # ONNX Runtime refusing a model file the user named (corrupt, not ONNX, not a model)
    "onnxruntime.capi.onnxruntime_pybind11_state.InvalidProtobuf",
    "onnxruntime.capi.onnxruntime_pybind11_state.InvalidGraph",
    "onnxruntime.capi.onnxruntime_pybind11_state.NoSuchFile",
    "onnxruntime.capi.onnxruntime_pybind11_state.NoModel",
))

#: How many skipped items a report names on its one stderr line.
REPORT_EXAMPLES = 3


class UsageError(ValueError):
    """A bad argument or input file, found by the command itself; its message is the one line shown."""


def debug():
    return os.environ.get("S2M_DEBUG", "").strip() not in ("", "0")


def is_user_error(exc):
    return any("%s.%s" % (c.__module__, c.__qualname__) in USER_ERRORS for c in type(exc).__mro__)


def one_line(exc):
    """The exception's message on one line (OSError: ``path: reason``; YAML: its problem and position)."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        text = "%s: %s" % (" -> ".join(names), exc.strerror) if names else exc.strerror
    else:
        text = str(exc)
    text = " ".join(text.split())
    return text or type(exc).__name__


def error_line(prog, exc):
    return "%s: error: %s" % (prog, one_line(exc) if isinstance(exc, BaseException) else " ".join(str(exc).split()))


def fail(prog, exc, code=2):
    """Print ``prog: error: <one line>`` on stderr and return ``code`` (use: ``return fail(PROG, exc)``)."""
    if debug() and isinstance(exc, BaseException):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(error_line(prog, exc), file=sys.stderr, flush=True)
    return code


def guarded(prog, func, *args, **kwargs):
    """Run a command's body under the policy above; returns its exit code (SystemExit passes through)."""
    try:
        return func(*args, **kwargs)
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted into user errors (exit 2) and bugs (traceback, exit 1)
        if is_user_error(exc):
            return fail(prog, exc)
        print("%s: internal error (a bug; please report it with the traceback below)" % prog, file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        return 1


def command(prog):
    """Decorator for a subcommand's ``main(argv)``: :func:`guarded` under the name ``prog``."""

    def wrap(func):
        @functools.wraps(func)
        def main(argv=None):
            return guarded(prog, func, argv)

        return main

    return wrap


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the one-line error convention: ``prog: error: <what> (see prog --help)``, exit 2."""

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, " ".join(str(message).split()), self.prog))


# --------------------------------------------------------------------------- inputs and outputs


def load_yaml_file(path, what="YAML file"):
    """The data of a YAML file; UsageError (one line) when it is missing, unreadable or not YAML."""
    from s2m_ros.files import YamlFileError, read_yaml_file

    path = str(path)
    if os.path.isdir(path):
        raise UsageError("%s %s is a folder, not a file" % (what, path))
    try:
        return read_yaml_file(path)
    except YamlFileError as exc:
        raise UsageError(exc.described(what)) from exc


def _first_existing(path):
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def named_os_error(exc, path):
    """``exc`` with ``path`` as its file name when it has none (a failed write() or close() names no file)."""
    if isinstance(exc, OSError) and exc.filename is None and exc.strerror:
        new = OSError(exc.errno, exc.strerror, str(path))
        new.__cause__ = exc
        return new
    return exc


def check_output_dir(path, what="output folder"):
    """Fail early (UsageError) when the folder ``path`` cannot be created or written."""
    path = str(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError("%s %s exists and is not a folder" % (what, path))
    base = _first_existing(path)
    if not os.path.isdir(base):
        raise UsageError("cannot create %s %s: %s is not a folder" % (what, path, base))
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError("cannot write %s %s: %s is not writable" % (what, path, base))


def check_output_file(path, what="output file"):
    """Fail early (UsageError) when the file ``path`` cannot be created or written (a full disk is only
    found when writing)."""
    path = str(path)
    if os.path.isdir(path):
        raise UsageError("%s %s is a folder" % (what, path))
    if os.path.lexists(path):
        if not os.access(path, os.W_OK):
            raise UsageError("cannot write %s %s: not writable" % (what, path))
        return
    parent = os.path.dirname(os.path.abspath(path))
    base = _first_existing(parent)
    if not os.path.isdir(base):
        raise UsageError("cannot create %s %s: %s is not a folder" % (what, path, base))
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError("cannot write %s %s: %s is not writable" % (what, path, base))


def check_input(path, kind="file", what="input"):
    """UsageError unless ``path`` exists and is a ``kind`` ("file", "folder" or "any")."""
    path = str(path)
    if not os.path.exists(path):
        raise UsageError("%s %s does not exist" % (what, path))
    if kind == "file" and os.path.isdir(path):
        raise UsageError("%s %s is a folder; expected a file" % (what, path))
    if kind == "folder" and not os.path.isdir(path):
        raise UsageError("%s %s is not a folder" % (what, path))


# --------------------------------------------------------------------------- skipped items


class Skipped:
    """The bad items of one run: ``add`` as they happen (one stderr line each), ``report`` at the end."""

    def __init__(self, prog, noun="item", quiet=False):
        self.prog, self.noun, self.quiet = prog, noun, quiet
        self.items = []  # {"item", "reason", "error"}

    def add(self, item, reason, error=""):
        error = " ".join(str(error).split())
        self.items.append({"item": str(item), "reason": str(reason), "error": error})
        if not self.quiet:
            print("%s: skipped %s: %s%s" % (self.prog, item, reason, (" (%s)" % error) if error else ""),
                  file=sys.stderr, flush=True)

    def add_exception(self, item, exc, bad_input=(ValueError,)):
        """Record ``exc`` of one item: ``bad_input`` for the input-error types (ValueError, incl. the
        conversion and dataset errors), ``processing_error`` (with the type) for anything else."""
        if debug():
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        if isinstance(exc, bad_input):
            self.add(item, "bad_input", one_line(exc))
        else:
            self.add(item, "processing_error", "%s: %s" % (type(exc).__name__, one_line(exc)))

    def __len__(self):
        return len(self.items)

    def by_reason(self):
        out = {}
        for s in self.items:
            out[s["reason"]] = out.get(s["reason"], 0) + 1
        return out

    def to_json(self):
        return [dict(s) for s in self.items]

    def report(self, total=None, where=None):
        """One line on stderr (nothing when no item was skipped)."""
        if not self.items:
            return
        of = (" of %d" % total) if total is not None else ""
        reasons = ", ".join("%s %d" % kv for kv in sorted(self.by_reason().items()))
        names = ", ".join(s["item"] for s in self.items[:REPORT_EXAMPLES])
        more = ", ..." if len(self.items) > REPORT_EXAMPLES else ""
        print("%s: skipped %d%s %s(s) (%s): %s%s%s" % (
            self.prog, len(self.items), of, self.noun, reasons, names, more,
            ("; listed under \"skipped\" in %s" % where) if where else ""), file=sys.stderr, flush=True)
