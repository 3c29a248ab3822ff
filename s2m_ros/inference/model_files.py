"""Model files: the errors a missing or unusable file raises (path + how to produce it), shared by every runtime."""
import os


class ModelFileError(FileNotFoundError):
    """A model file is missing; the message says which path and how to produce it."""

    def __init__(self, path, hint=""):
        self.path = str(path)
        self.hint = hint
        msg = "model file not found: %s" % self.path
        if hint:
            msg += " (produce it with: %s)" % hint
        super().__init__(msg)


class InvalidModelError(ModelFileError):
    """A model file exists but is not a model the runtime can load (empty, truncated, not ONNX, ...);
    the message (one line) names the file, the runtime's reason and how to produce a valid one."""

    def __init__(self, path, reason, hint=""):
        self.path = str(path)
        self.hint = hint
        self.reason = " ".join(str(reason).split())
        msg = "%s is not a valid ONNX model (%s)" % (self.path, self.reason)
        if hint:
            msg += "; produce it with: %s" % hint
        FileNotFoundError.__init__(self, msg)


def require_file(path, hint=""):
    """Return ``path`` if it is a readable file, else raise :class:`ModelFileError`."""
    if not path or not os.path.isfile(path):
        raise ModelFileError(path, hint)
    return str(path)


def require_model_file(path, hint=""):
    """:func:`require_file`, and an empty file is :class:`InvalidModelError` (before any runtime sees it)."""
    path = require_file(path, hint)
    if os.path.getsize(path) == 0:
        raise InvalidModelError(path, "an empty file, 0 bytes", hint)
    return path
