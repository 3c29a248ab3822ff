"""Model files: the one error a missing file raises (path + how to produce it), shared by every runtime."""
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


def require_file(path, hint=""):
    """Return ``path`` if it is a readable file, else raise :class:`ModelFileError`."""
    if not path or not os.path.isfile(path):
        raise ModelFileError(path, hint)
    return str(path)
