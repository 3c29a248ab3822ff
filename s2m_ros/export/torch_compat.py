"""Make torchvision (and through it timm and ``mobile_sam``) importable next to a CPU-only torch.

PyPI's torchvision wheel is CUDA-linked: with the ``+cpu`` torch wheel its ``_C.so`` fails to load,
and ``import torchvision`` then dies in ``_meta_registrations`` with ``operator torchvision::nms
does not exist`` (it registers fake kernels for ops it assumes are defined). timm and mobile_sam
import torchvision, so they fail too.

:func:`ensure_torchvision` fixes that before the first import, once per process:

1. If torchvision is already imported, or its ``_C.so`` loads, nothing else is done.
2. Otherwise the two operator schemas torchvision's Python side expects are defined through
   ``torch.library`` — ``torchvision::nms`` with a pure-torch CPU kernel (greedy NMS, same
   semantics as torchvision's) and ``torchvision::qnms`` as a schema only — and, after import,
   ``torchvision.extension._has_ops`` is marked true so ``torchvision.ops.nms`` works.
   The other compiled ops (roi_align, deform_conv, ...) stay unavailable; MobileSAM export and
   its automatic mask generator need none of them.

Only the export tooling and tests use this; the runtime (``s2m_ros.inference``) never imports torch.
"""
import importlib.util
import os
import sys
import warnings

_LIBRARY = None  # the torch.library.Library defining the fallback ops; must stay referenced
_STATE = {"done": False, "mode": None}


def _op_exists(name):
    import torch

    try:
        getattr(torch.ops.torchvision, name).default
        return True
    except (AttributeError, RuntimeError):
        return False


def _nms_cpu(dets, scores, iou_threshold):
    """Greedy NMS: indices of kept boxes (x1, y1, x2, y2), by decreasing score (torchvision semantics)."""
    import torch

    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=dets.device)
    boxes = dets.to(torch.float64)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = torch.argsort(scores, descending=True, stable=True)
    lt = torch.maximum(boxes[order, None, :2], boxes[None, order, :2])
    rb = torch.minimum(boxes[order, None, 2:], boxes[None, order, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    a = areas[order]
    iou = inter / (a[:, None] + a[None, :] - inter)
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    keep = []
    over = (iou > iou_threshold).cpu()
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def _define_fallback_ops():
    global _LIBRARY
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    if not _op_exists("nms"):
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.impl("nms", _nms_cpu, "CPU")
    if not _op_exists("qnms"):
        # schema only: torchvision registers a fake kernel for it at import; never executed here
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY = lib


def ensure_torchvision():
    """Make ``import torchvision`` work on this torch; idempotent. Returns the mode used.

    ``"native"``: torchvision imported as is (its ``_C.so`` works, or it was already imported);
    ``"fallback"``: pure-torch ``nms`` registered and the ops marked present.
    """
    if _STATE["done"]:
        return _STATE["mode"]
    import torch

    mode = "native"
    if "torchvision" not in sys.modules:
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("torchvision is not installed (needed for MobileSAM export only)")
        lib_dir = list(spec.submodule_search_locations)[0]
        loaded = False
        for fname in sorted(os.listdir(lib_dir)):
            if fname.startswith("_C") and fname.endswith((".so", ".pyd")):
                try:
                    torch.ops.load_library(os.path.join(lib_dir, fname))
                    loaded = _op_exists("nms")
                except (OSError, RuntimeError):
                    loaded = False
                break
        if not loaded:
            _define_fallback_ops()
            mode = "fallback"
    import torchvision  # noqa: F401  (the import itself is the point)
    import torchvision.extension as ext

    if mode == "fallback" or not ext._has_ops():
        if not _op_exists("nms"):
            _define_fallback_ops()
        ext._has_ops = lambda: True
        mode = "fallback"
    _STATE.update(done=True, mode=mode)
    return mode


def import_mobile_sam():
    """Import and return the official ``mobile_sam`` module (package mobilesam-mirror)."""
    ensure_torchvision()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's "Overwriting tiny_vit_* in registry" and deprecations
        import mobile_sam

    return mobile_sam
