"""`s2m fit-sml`: standardized max-logit (SML) statistics from in-distribution images.

SML (Jung et al., ICCV 2021) standardises the max logit per predicted class with the class's mean
and standard deviation over in-distribution pixels. This fits them with the same model, preprocessing
and channels the pipeline uses, and writes the JSON that ``score_method: sml`` / ``sml_stats`` reads.

  s2m fit-sml --model espnet.onnx --preset espnet --images DIR [DIR ...] --out sml.json [--limit N]
"""
import argparse
import sys

import numpy as np


def fit(scorer, paths, show_progress=None):
    """Accumulate per-class max-logit statistics of ``scorer`` (a ModelScorer) over image files."""
    from s2m_ros.files import iter_images
    from s2m_ros.segmentation.scores import SMLAccumulator

    acc = None
    n = 0
    for _, image in iter_images(paths, "fit-sml", show_progress):
        logits = scorer.id_logits(image)
        if acc is None:
            acc = SMLAccumulator(logits.shape[0])
        acc.add(logits)
        n += 1
    if acc is None:
        raise ValueError("no images to fit on")
    return acc.result(), n


def main(argv=None):
    ap = argparse.ArgumentParser(prog="s2m fit-sml", description=__doc__.split("\n")[0])
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
    from s2m_ros.segmentation.model_scorer import PRESETS, ModelScorer
    from s2m_ros.segmentation.pipeline import scorer_config

    if args.preset != "none" and args.preset not in PRESETS:
        print("s2m fit-sml: unknown preset %r (known: %s, none)" % (args.preset, ", ".join(PRESETS)), file=sys.stderr)
        return 2
    try:
        overrides = {"method": "maxlogit"}
        for s in args.set or ():
            set_dotted(overrides, s)
        # the same configuration the pipeline builds (export sidecar first, then the preset)
        config = scorer_config("onnx" if args.preset == "none" else args.preset, args.model, overrides)
        scorer = ModelScorer(config, threads=args.threads)
        paths = iter_image_paths(args.images, args.limit)
        stats, n = fit(scorer, paths)
    except (ModelFileError, FileNotFoundError, ValueError, TypeError) as exc:
        print("s2m fit-sml: %s" % exc, file=sys.stderr)
        return 2
    stats.save(args.out)
    print("fitted SML statistics for %d classes on %d image(s) (%d pixels) -> %s"
          % (stats.mean.size, n, int(stats.count.sum()), args.out))
    never = np.flatnonzero(stats.count == 0)
    if never.size:
        print("classes never predicted (pooled statistics used): %s" % never.tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
