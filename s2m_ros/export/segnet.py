"""Export the Cityscapes segmentation networks (ESPNet, ESPNetv2) to ONNX.

``export_onnx`` writes a fixed-size model (input ``image`` 1x3xHxW float32, output ``logits``
1x20xHxW), checks it with ``onnx.checker`` and writes a JSON sidecar ``<out>.json`` naming the
preprocessing preset (``s2m_ros.segmentation.model_scorer.PRESETS``) so the runtime can configure itself
from the model file alone. ``main`` is the command line (``python -m s2m_ros.export.segnet``,
and what ``s2m export <arch>`` runs).
"""
import argparse
import json
import os
import sys
import time
import warnings

ARCHS = ("espnet", "espnetv2")
SIDECAR_FORMAT = "s2m_ros.segnet/1"


def build_model(arch, weights):
    """The torch model for ``arch`` with the published weights, in eval mode."""
    if arch == "espnet":
        from s2m_ros.export.espnet import load_espnet

        return load_espnet(weights)
    if arch == "espnetv2":
        from s2m_ros.export.espnetv2 import load_espnetv2

        return load_espnetv2(weights)
    raise ValueError("unknown arch %r (known: %s)" % (arch, ", ".join(ARCHS)))


def sidecar_path(onnx_path):
    return str(onnx_path) + ".json"


def export_onnx(arch, weights, out_path, width=1024, height=512, opset=17, model=None):
    """Export ``arch`` with ``weights`` to ``out_path``; returns a dict describing what was written.

    The dict has ``path``, ``sidecar``, ``arch``, ``width``, ``height``, ``opset`` and
    ``export_s`` (seconds spent in torch.onnx.export + checker). ``model`` may pass an already
    loaded torch model (then ``weights`` is only recorded).
    """
    import onnx
    import torch

    if width % 16 or height % 16:
        raise ValueError("width and height must be multiples of 16, got %dx%d" % (width, height))
    if model is None:
        model = build_model(arch, weights)
    model.eval()
    out_dir = os.path.dirname(os.path.abspath(str(out_path)))
    os.makedirs(out_dir, exist_ok=True)
    dummy = torch.zeros(1, 3, int(height), int(width))
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy (TorchScript) exporter warns about its deprecation and about the sizes it
        # freezes into the graph; a fixed input size is what we want here
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(out_path), input_names=["image"], output_names=["logits"],
                          opset_version=int(opset), do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(onnx.load(str(out_path)))
    elapsed = time.perf_counter() - t0
    info = {"format": SIDECAR_FORMAT, "arch": arch, "preset": arch, "input_width": int(width),
            "input_height": int(height), "opset": int(opset), "input": "image", "output": "logits",
            "weights": os.path.basename(str(weights)) if weights else None}
    with open(sidecar_path(out_path), "w") as f:
        json.dump(info, f, indent=1)
    info.update(path=str(out_path), sidecar=sidecar_path(out_path), export_s=elapsed)
    return info


def compare_with_torch(model, onnx_path, arch, width, height, seed=0, threads=2):
    """Max abs difference of ONNX Runtime vs torch logits on one random image.

    The image (uniform random 0..255, ``height`` x ``width``) goes through the model's own
    preprocessing preset, so the values are in the range the network works in (ESPNet's inputs
    are divided by 255 after normalisation; N(0, 1) inputs would be 255x too large for it).
    """
    import numpy as np
    from s2m_ros.inference.backend import create_session
    import torch

    from s2m_ros.segmentation.model_scorer import PRESETS, prepare_input

    image = np.random.default_rng(seed).integers(0, 256, (int(height), int(width), 3), dtype=np.uint8)
    x = prepare_input(image, PRESETS[arch])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = create_session(str(onnx_path), providers=["CPUExecutionProvider"], threads=int(threads))
    got = sess.run({"image": x})["logits"]
    return float(np.abs(got - ref).max())


def main(argv=None):
    """Command line: export, verify against torch, print the result and how to use the model."""
    parser = argparse.ArgumentParser(prog="s2m export", description=__doc__.split("\n\n")[0])
    parser.add_argument("arch_pos", nargs="?", choices=ARCHS, metavar="ARCH", help="espnet or espnetv2")
    parser.add_argument("--arch", choices=ARCHS, help="same as the positional ARCH")
    parser.add_argument("--weights", required=True, help="published Cityscapes .pth state_dict")
    parser.add_argument("--out", required=True, help="output .onnx path (a <out>.json sidecar is written too)")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX-vs-torch comparison")
    args = parser.parse_args(argv)
    arch = args.arch or args.arch_pos
    if arch is None or (args.arch and args.arch_pos and args.arch != args.arch_pos):
        parser.error("give the architecture once: ARCH or --arch {%s}" % ",".join(ARCHS))
    if not os.path.isfile(args.weights):
        print("error: weights file not found: %s" % args.weights, file=sys.stderr)
        return 2
    try:
        model = build_model(arch, args.weights)
        info = export_onnx(arch, args.weights, args.out, args.width, args.height, args.opset, model=model)
    except (RuntimeError, ValueError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    print("wrote %s (%s, input 1x3x%dx%d 'image', output 'logits', opset %d) in %.1f s" % (
        info["path"], arch, args.height, args.width, args.opset, info["export_s"]))
    print("wrote %s (preprocessing preset '%s')" % (info["sidecar"], info["preset"]))
    if not args.no_check:
        diff = compare_with_torch(model, info["path"], arch, args.width, args.height)
        print("max abs diff ONNX Runtime vs torch on a random input: %.3g" % diff)
    print("use it: s2m segment IMAGES --out DIR --profile %s+grabcut --scorer-model %s" % (arch, info["path"]))
    print("        (Python: ModelScorer(config_for_model(%r)) from s2m_ros.segmentation.model_scorer)" % info["path"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
