"""`s2m segment`: run the S2M pipeline on image files; write overlays, instance images and JSON.

  s2m segment IMAGES_OR_FOLDERS... --out DIR [--profile surface+grabcut] [--config pipeline.yaml]
              [--scorer-model M.onnx] [--encoder E.onnx --decoder D.onnx] [--set key=value ...]
              [--refine] [--limit N]

Writes DIR/<stem>.overlay.jpg, DIR/<stem>.instances.png (0 = background, k = instance k) and
DIR/results.json (per image: instances with box, area, anomaly score, contrast, quality; prompts;
stage timings in ms).
"""
import argparse
import os
import statistics
import sys

import cv2
import yaml

from s2m_ros.files import iter_image_paths, iter_images, write_json


def set_dotted(data, assignment):
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict."""
    if "=" not in assignment:
        raise ValueError("--set expects key=value, got %r" % assignment)
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError("--set %s: %s is not a mapping" % (key, p))
    node[parts[-1]] = yaml.safe_load(raw)
    return data


def build_config(args):
    from s2m_ros.segmentation.pipeline import PipelineConfig

    data = {}
    if args.config:
        with open(args.config) as f:
            loaded = yaml.safe_load(f) or {}
        data = loaded.get("pipeline", loaded)
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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="s2m segment", description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="image files or folders")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--limit", type=int, default=0, help="at most N images")
    add_pipeline_arguments(ap)
    args = ap.parse_args(argv)

    from s2m_ros.segmentation.overlay import draw_overlay
    from s2m_ros.inference.backend import ModelFileError
    from s2m_ros.segmentation.pipeline import PipelineConfigError, S2MPipeline

    try:
        config = build_config(args)
        pipeline = S2MPipeline(config)
        paths = iter_image_paths(args.inputs, args.limit)
    except (ModelFileError, PipelineConfigError, FileNotFoundError, ValueError) as exc:
        print("s2m segment: %s" % exc, file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    results = []
    for path, image in iter_images(paths, "segment"):
        res = pipeline.process(image)
        stem = path.stem
        cv2.imwrite(os.path.join(args.out, stem + ".overlay.jpg"),
                    draw_overlay(image, res.instances, res.score_map, prompts=res.prompts))
        cv2.imwrite(os.path.join(args.out, stem + ".instances.png"), res.frame_masks().instance_image())
        results.append({
            "image": str(path), "width": res.width, "height": res.height,
            "instances": [{"id": m.id, "roi": list(m.roi), "area": m.area, "anomaly_score": m.anomaly_score,
                           "contrast": m.contrast, "quality": m.quality, "prompt_box": list(m.prompt_box)}
                          for m in res.instances],
            "prompts": [{"box": list(p.box), "point": list(p.point), "prominence": p.prominence}
                        for p in res.prompts],
            "stage_ms": res.stage_ms})
    summary = {"profile": config.profile, "n_images": len(results),
               "median_stage_ms": {k: statistics.median(r["stage_ms"][k] for r in results)
                                   for k in (results[0]["stage_ms"] if results else {})},
               "config": config.to_dict(), "images": results}
    write_json(os.path.join(args.out, "results.json"), summary)
    n_inst = sum(len(r["instances"]) for r in results)
    print("%d image(s), %d instance(s); wrote %s" % (len(results), n_inst, os.path.abspath(args.out)))
    for k, v in summary["median_stage_ms"].items():
        print("  %-9s %8.1f ms (median)" % (k, v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
