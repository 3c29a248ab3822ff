"""`s2m segment`: run the S2M pipeline on image files; write overlays, instance images and JSON.

  s2m segment IMAGES_OR_FOLDERS... --out DIR [--profile surface+grabcut] [--config pipeline.yaml]
              [--scorer-model M.onnx] [--encoder E.onnx --decoder D.onnx] [--set key=value ...]
              [--refine] [--limit N]

Writes DIR/<stem>.overlay.jpg, DIR/<stem>.instances.png (0 = background, k = instance k) and
DIR/results.json (per image: instances with box, area, anomaly score, contrast, quality; prompts;
stage timings in ms; under "skipped" the files that were not processed, with the reason).
A file that is not a decodable image, or an image the pipeline cannot take (1x1, ...), is skipped
and reported; the others are still written. Exit 2 when none could be processed.
"""
import errno
import os
import statistics
import sys

import cv2
import yaml

from s2m_ros.cli.common import ArgumentParser, Skipped, check_output_dir, command, fail
from s2m_ros.files import iter_image_paths, iter_images, write_json


def set_dotted(data, assignment, option="--set"):
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict; ValueError (UsageError) naming
    ``option`` and the assignment when it is malformed."""
    from s2m_ros.cli.common import UsageError

    if "=" not in assignment:
        raise UsageError("%s expects key=value, got %r" % (option, assignment))
    key, raw = assignment.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise UsageError("%s %r: the key must be dotted names, e.g. a.b" % (option, assignment))
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UsageError("%s %s: the value %r is not valid YAML (%s)" % (
            option, key, raw, " ".join(str(getattr(exc, "problem", None) or exc).split()))) from None
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UsageError("%s %s: %s is already a value, not a mapping" % (option, key, p))
    node[parts[-1]] = value
    return data


def build_config(args):
    from s2m_ros.cli.common import UsageError, load_yaml_file
    from s2m_ros.segmentation.pipeline import PipelineConfig

    data = {}
    if args.config:
        loaded = load_yaml_file(args.config, "--config") or {}
        if isinstance(loaded, dict) and "pipeline" in loaded:
            loaded = loaded["pipeline"] or {}
        if not isinstance(loaded, dict):
            raise UsageError("--config %s: expected a mapping of pipeline keys (optionally under 'pipeline:'), "
                             "got %s" % (args.config, type(loaded).__name__))
        data = dict(loaded)
    for key, value in (("profile", args.profile), ("scorer_model", args.scorer_model),
                       ("mobilesam_encoder", args.encoder), ("mobilesam_decoder", args.decoder),
                       ("backend", args.backend), ("score_method", args.score)):
        if value:
            data[key] = value
    if args.refine:
        data["refine"] = True
    if args.threads:
        data["threads"] = args.threads
    for s in args.set or ():
        set_dotted(data, s)
    return PipelineConfig.from_dict(data)


def add_pipeline_arguments(parser):
    parser.add_argument("--profile", help="<scorer>+<segmenter>, e.g. surface+grabcut (default), espnet+grabcut")
    parser.add_argument("--config", help="pipeline YAML (keys of PipelineConfig, optionally under 'pipeline:')")
    parser.add_argument("--scorer-model", help="scorer ONNX file (profiles espnet, espnetv2, onnx)")
    parser.add_argument("--score", help="score method: msp, maxlogit, entropy, energy, sml, score_map; rba (mask-classification models)")
    parser.add_argument("--encoder", help="MobileSAM encoder ONNX (profiles *+mobilesam)")
    parser.add_argument("--decoder", help="MobileSAM decoder ONNX (profiles *+mobilesam)")
    parser.add_argument("--backend", choices=("onnxruntime", "tensorrt"))
    parser.add_argument("--threads", type=int, default=0, help="runtime threads (0 = default)")
    parser.add_argument("--refine", action="store_true", help="also compute the refined anomaly map")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any config key, dotted (e.g. selection.min_contrast=4)")


def check_pipeline_arguments(args):
    """Argument checks argparse cannot express (UsageError)."""
    from s2m_ros.cli.common import UsageError

    if args.threads < 0:
        raise UsageError("--threads must be >= 0, got %d" % args.threads)
    if getattr(args, "limit", 0) < 0:
        raise UsageError("--limit must be >= 0, got %d" % args.limit)


def make_pipeline(config):
    """S2MPipeline of ``config``; a type or value the configuration accepted but a stage rejects is
    reported as a configuration error (PipelineConfigError), not as a crash."""
    from s2m_ros.segmentation.pipeline import PipelineConfigError, S2MPipeline

    try:
        return S2MPipeline(config)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PipelineConfigError):
            raise
        raise PipelineConfigError("invalid pipeline configuration: %s: %s" % (type(exc).__name__, exc)) from exc


def _imwrite(path, image):
    if not cv2.imwrite(path, image):
        raise OSError(errno.EIO, "cannot write the image (OpenCV imwrite failed)", path)


PROG = "s2m segment"


@command(PROG)
def main(argv=None):
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="image files or folders")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--limit", type=int, default=0, help="at most N images")
    add_pipeline_arguments(ap)
    args = ap.parse_args(argv)
    check_pipeline_arguments(args)

    from s2m_ros.segmentation.overlay import draw_overlay

    check_output_dir(args.out, "--out")
    config = build_config(args)
    paths = iter_image_paths(args.inputs, args.limit)
    pipeline = make_pipeline(config)
    os.makedirs(args.out, exist_ok=True)
    skipped = Skipped(PROG, "image")
    results = []
    for path, image in iter_images(paths, "segment", on_skip=lambda p, exc: skipped.add(p, "bad_input", exc)):
        try:
            res = pipeline.process(image)
            overlay = draw_overlay(image, res.instances, res.score_map, prompts=res.prompts)
            instances = res.frame_masks().instance_image()
        except Exception as exc:  # noqa: BLE001 - one bad image must not end the batch (counted, reported)
            skipped.add_exception(path, exc)
            continue
        stem = path.stem
        _imwrite(os.path.join(args.out, stem + ".overlay.jpg"), overlay)
        _imwrite(os.path.join(args.out, stem + ".instances.png"), instances)
        results.append({
            "image": str(path), "width": res.width, "height": res.height,
            "instances": [{"id": m.id, "roi": list(m.roi), "area": m.area, "anomaly_score": m.anomaly_score,
                           "contrast": m.contrast, "quality": m.quality, "prompt_box": list(m.prompt_box)}
                          for m in res.instances],
            "prompts": [{"box": list(p.box), "point": list(p.point), "prominence": p.prominence}
                        for p in res.prompts],
            "stage_ms": res.stage_ms})
    summary = {"profile": config.profile, "n_images": len(results), "n_skipped": len(skipped),
               "median_stage_ms": {k: statistics.median(r["stage_ms"][k] for r in results)
                                   for k in (results[0]["stage_ms"] if results else {})},
               "config": config.to_dict(), "images": results, "skipped": skipped.to_json()}
    out_json = os.path.join(args.out, "results.json")
    write_json(out_json, summary)
    n_inst = sum(len(r["instances"]) for r in results)
    print("%d image(s), %d instance(s)%s; wrote %s" % (
        len(results), n_inst, (", %d skipped" % len(skipped)) if skipped else "", os.path.abspath(args.out)))
    for k, v in summary["median_stage_ms"].items():
        print("  %-9s %8.1f ms (median)" % (k, v))
    skipped.report(len(paths), out_json)
    if skipped and not results:
        return fail(PROG, "none of the %d input file(s) could be processed (see %s)" % (len(paths), out_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
