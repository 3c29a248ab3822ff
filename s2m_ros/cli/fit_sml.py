"""`s2m fit-sml`: standardized max-logit (SML) statistics from in-distribution images.

SML (Jung et al., ICCV 2021) standardises the max logit per predicted class with the class's mean
and standard deviation over in-distribution pixels. This fits them with the same model, preprocessing
and channels the pipeline uses, and writes the JSON that ``score_method: sml`` / ``sml_stats`` reads.

  s2m fit-sml --model espnet.onnx --preset espnet --images DIR [DIR ...] --out sml.json [--limit N]

A file that is not a decodable image, or an image the model cannot take, is skipped and reported at
the end; exit 2 when no image could be used.
"""
import sys

import numpy as np

from s2m_ros.cli.common import ArgumentParser, Skipped, UsageError, check_output_file, command, named_os_error

PROG = "s2m fit-sml"


def fit(scorer, paths, show_progress=None, skipped=None):
    """Accumulate per-class max-logit statistics of ``scorer`` (a ModelScorer) over image files.
    An image that cannot be read or scored is recorded in ``skipped`` (a common.Skipped) and left out."""
    from s2m_ros.files import iter_images
    from s2m_ros.segmentation.scores import SMLAccumulator

    if skipped is None:
        skipped = Skipped(PROG, "image")
    acc = None
    n = 0
    for path, image in iter_images(paths, "fit-sml", show_progress,
                                   on_skip=lambda p, exc: skipped.add(p, "bad_input", exc)):
        try:
            logits = scorer.id_logits(image)
            if acc is None:
                acc = SMLAccumulator(logits.shape[0])
            acc.add(logits)
        except Exception as exc:  # noqa: BLE001 - one bad image must not end the fit (counted, reported)
            skipped.add_exception(path, exc)
            continue
        n += 1
    if acc is None:
        raise UsageError("no image to fit on (%d file(s) given, %d skipped)" % (len(paths), len(skipped)))
    try:
        return acc.result(), n
    except ValueError as exc:  # every logit non-finite
        raise UsageError("no usable pixels in %d image(s): %s" % (n, exc)) from exc


@command(PROG)
def main(argv=None):
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="segmentation model ONNX (logits output)")
    ap.add_argument("--preset", default="espnet", help="preprocessing preset: espnet, espnetv2 or 'none' (use --set)")
    ap.add_argument("--images", nargs="+", required=True, help="in-distribution image files or folders")
    ap.add_argument("--out", required=True, help="statistics JSON to write")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="ScorerConfig override (YAML value)")
    args = ap.parse_args(argv)

    from s2m_ros.files import iter_image_paths
    from s2m_ros.cli.segment import set_dotted
    from s2m_ros.inference.backend import ModelFileError
    from s2m_ros.segmentation.model_scorer import PRESETS, ModelScorer, ScorerConfigError
    from s2m_ros.segmentation.pipeline import scorer_config

    if args.preset != "none" and args.preset not in PRESETS:
        raise UsageError("unknown preset %r (known: %s, none)" % (args.preset, ", ".join(PRESETS)))
    if args.limit < 0 or args.threads < 0:
        raise UsageError("--limit and --threads must be >= 0")
    check_output_file(args.out, "--out")
    overrides = {"method": "maxlogit"}
    for s in args.set or ():
        set_dotted(overrides, s)
    try:
        # the same configuration the pipeline builds (export sidecar first, then the preset)
        config = scorer_config("onnx" if args.preset == "none" else args.preset, args.model, overrides)
        scorer = ModelScorer(config, threads=args.threads)
    except (ModelFileError, ScorerConfigError):
        raise
    except (TypeError, ValueError) as exc:  # a --set value or sidecar the scorer refuses: the user's input
        raise UsageError("invalid scorer configuration: %s: %s" % (type(exc).__name__, exc)) from exc
    paths = iter_image_paths(args.images, args.limit)
    skipped = Skipped(PROG, "image")
    stats, n = fit(scorer, paths, skipped=skipped)
    try:
        stats.save(args.out)
    except OSError as exc:
        raise named_os_error(exc, args.out) from exc
    print("fitted SML statistics for %d classes on %d image(s) (%d pixels) -> %s"
          % (stats.mean.size, n, int(stats.count.sum()), args.out))
    never = np.flatnonzero(stats.count == 0)
    if never.size:
        print("classes never predicted (pooled statistics used): %s" % never.tolist())
    skipped.report(len(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
