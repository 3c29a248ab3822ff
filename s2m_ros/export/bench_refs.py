"""Torch reference timings for `s2m bench --torch` (export tooling: torch is allowed here only).

``encoder_onnxruntime_vs_torch``: MobileSAM image encoder (random weights: the cost does not
depend on the values) on the same preprocessed 1x3x1024x1024 input, ONNX Runtime / torch.
``pipeline_onnxruntime_vs_torch``: the espnet(+v2)+grabcut pipeline total with its scorer run by
ONNX Runtime / the same pipeline with the scorer's session replaced by the torch model with the SAME
published weights (``--weights``), so both see the same score maps, prompts and GrabCut work.
Ratios < 1 mean ONNX Runtime is faster.
"""
import numpy as np
import torch


class TorchSession:
    """A torch module behind the session interface of s2m_ros.inference.backend (for comparisons)."""

    backend = "torch"

    def __init__(self, module, like):
        self.module = module.eval()
        self.name = "torch:" + like.name
        self.input_names, self.output_names = list(like.input_names), list(like.output_names)
        self.input_shapes = dict(like.input_shapes)
        self.providers = ["torch"]

    @torch.inference_mode()
    def run(self, feeds, outputs=None):
        out = self.module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names])
        out = out if isinstance(out, (tuple, list)) else (out,)
        res = dict(zip(self.output_names, [o.numpy() for o in out]))
        return {n: res[n] for n in (outputs or self.output_names)}


def torch_comparisons(pipelines, image, args, stages):
    from s2m_ros.bench.timing import median_ms as _median_ms, time_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    n = max(3, args.frames // 4)
    out = {}
    for key, pipe in pipelines.items():
        if "+mobilesam/onnxruntime" in key and "encoder_onnxruntime_vs_torch" not in out:
            from s2m_ros.export.mobilesam import build_mobilesam
            from s2m_ros.segmentation.mobilesam import preprocess

            x, _ = preprocess(image)
            sam = build_mobilesam(None).eval()
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                t_torch = _median_ms(lambda: sam.image_encoder(xt), n)
            t_ort = _median_ms(lambda: pipe.segmenter.encoder.run({"image": x}), n)
            out["encoder_onnxruntime_vs_torch"] = round(t_ort / t_torch, 3)
            stages["mobilesam/torch/encoder"] = {"median_ms": round(t_torch, 3)}
            stages["mobilesam/onnxruntime/encoder_only"] = {"median_ms": round(t_ort, 3)}
    for arch in ("espnet", "espnetv2"):
        key = "%s+grabcut/onnxruntime" % arch
        if key not in pipelines or "pipeline_onnxruntime_vs_torch" in out:
            continue
        pipe = pipelines[key]
        import cv2

        from s2m_ros.export.segnet import build_model

        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        weights = _weights(args, arch)
        if weights is None:
            stages["%s+grabcut/torch/skipped" % arch] = {"reason": "no published weights under --weights"}
            continue
        ort_total = np.median(time_pipeline(pipe, jpeg, n, 1)["total"])
        ort_session = pipe.scorer.session
        model = build_model(arch, weights)
        pipe.scorer.session = TorchSession(model, ort_session)
        try:
            torch_samples = time_pipeline(pipe, jpeg, n, 1)
        finally:
            pipe.scorer.session = ort_session
        stages["%s+grabcut/torch/total" % arch] = {"median_ms": round(float(np.median(torch_samples["total"])), 3)}
        stages["%s+grabcut/torch/score" % arch] = {"median_ms": round(float(np.median(torch_samples["score"])), 3)}
        out["pipeline_onnxruntime_vs_torch"] = round(float(ort_total / np.median(torch_samples["total"])), 3)
    return out


WEIGHT_FILES = {"espnet": "espnet_p2_q8_cityscapes/decoder/espnet_p_2_q_8.pth",
                "espnetv2": "espnetv2_s2.0_cityscapes/espnetv2_s_2.0_city_1024x512.pth"}


def _weights(args, arch):
    import os

    path = os.path.join(getattr(args, "weights", "") or "", WEIGHT_FILES[arch])
    return path if os.path.isfile(path) else None
