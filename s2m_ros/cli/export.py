"""`s2m export <model>`: dispatch to the export tooling (needs torch; never used by the nodes).

A weights or checkpoint file that torch cannot load (corrupt, truncated, not a checkpoint) is a user
error: one line, exit 2, like a missing one."""
import sys

from s2m_ros.cli.common import command, fail

PROG = "s2m export"

MODELS = {
    "espnet": ("s2m_ros.export.segnet", ["--arch", "espnet"]),
    "espnetv2": ("s2m_ros.export.segnet", ["--arch", "espnetv2"]),
    "mobilesam": ("s2m_ros.export.mobilesam", []),
}


@command(PROG)
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: s2m export {%s} [options]  (s2m export <model> --help for its options)" % ",".join(MODELS))
        return 0
    if argv[0] not in MODELS:
        return fail(PROG, "unknown model %r (known: %s)" % (argv[0], ", ".join(MODELS)))
    import importlib
    import pickle
    import zipfile

    module, prefix = MODELS[argv[0]]
    try:
        return importlib.import_module(module).main(prefix + argv[1:])
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as exc:  # torch.load of a file that is no checkpoint
        text = " ".join(str(exc).split())
        return fail(PROG, "cannot load the weights: not a PyTorch checkpoint, or truncated (%s%s)" % (
            type(exc).__name__, (": " + text[:160] + ("..." if len(text) > 160 else "")) if text else ""))
