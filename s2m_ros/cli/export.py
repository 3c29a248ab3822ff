"""`s2m export <model>`: dispatch to the export tooling (needs torch; never used by the nodes)."""
import sys

MODELS = {
    "espnet": ("s2m_ros.export.segnet", ["--arch", "espnet"]),
    "espnetv2": ("s2m_ros.export.segnet", ["--arch", "espnetv2"]),
    "mobilesam": ("s2m_ros.export.mobilesam", []),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: s2m export {%s} [options]  (s2m export <model> --help for its options)" % ",".join(MODELS))
        return 0
    if argv[0] not in MODELS:
        print("s2m export: unknown model %r (known: %s)" % (argv[0], ", ".join(MODELS)), file=sys.stderr)
        return 2
    import importlib

    module, prefix = MODELS[argv[0]]
    return importlib.import_module(module).main(prefix + argv[1:])
