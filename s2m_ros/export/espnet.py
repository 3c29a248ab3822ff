"""ESPNet (Mehta et al., ECCV 2018), the full segmentation network with p=2, q=8, for Cityscapes.

Written from the paper and the published weight key list (module names must match the
released state_dict). Structure, in the paper's words:

* ESP module: 1x1 "reduce" to n = C/5 channels, five parallel 3x3 convolutions with dilation
  1, 2, 4, 8, 16 ("split/transform"; the d=1 branch takes the remainder C - 4n), then
  hierarchical feature fusion (HFF): the dilated outputs are summed cumulatively
  (d2, d2+d4, d2+d4+d8, d2+d4+d8+d16) before concatenation, which removes gridding
  artefacts. Optional identity residual, then BatchNorm + PReLU.
* The strided variant (first block of a level) reduces with a 3x3 stride-2 convolution and has
  no residual.
* ESPNet-C encoder: 3x3 stride-2 CBR (16 ch) -> concat with the image average-pooled to the
  same size ("input reinforcement") -> strided ESP (64) -> p ESP blocks -> concat
  [block output, strided output, image/4] (131 ch) -> strided ESP (128) -> q ESP blocks ->
  concat (256) -> 1x1 classifier at 1/8 resolution.
* Decoder: the 1/8 logits are batch-normalised and upsampled x2 by a transposed conv, merged
  with a 1x1 projection of the 131-ch 1/4 features, refined by an ESP block without
  residual, upsampled x2 (transposed conv + BR), concatenated with the 16-ch level-1 features,
  3x3 CBR, and a last stride-2 transposed conv gives logits at the input resolution.

BatchNorm epsilon is 1e-3 throughout (the published models were trained with it).
Output: 20 channels (Cityscapes trainIds 0..18, channel 19 = ignore), same H x W as the input.
Preprocessing of the published model: see ``s2m_ros.segmentation.model_scorer.PRESETS['espnet']``.
"""
import torch
from torch import nn

BN_EPS = 1e-3
NUM_CLASSES = 20


def _conv(n_in, n_out, k, stride=1, dilation=1):
    """Bias-free conv with 'same' padding (for odd k)."""
    return nn.Conv2d(n_in, n_out, k, stride=stride, padding=(k - 1) // 2 * dilation, dilation=dilation, bias=False)


class ConvOnly(nn.Module):
    """A bare conv held as ``.conv`` (key names ``*.conv.weight``)."""

    def __init__(self, n_in, n_out, k, stride=1, dilation=1):
        super().__init__()
        self.conv = _conv(n_in, n_out, k, stride, dilation)

    def forward(self, x):
        return self.conv(x)


class BNPReLU(nn.Module):
    """BatchNorm + PReLU (``.bn``, ``.act``)."""

    def __init__(self, channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.act = nn.PReLU(channels)

    def forward(self, x):
        return self.act(self.bn(x))


class ConvBNPReLU(nn.Module):
    """Conv + BatchNorm + PReLU (``.conv``, ``.bn``, ``.act``)."""

    def __init__(self, n_in, n_out, k, stride=1):
        super().__init__()
        self.conv = _conv(n_in, n_out, k, stride)
        self.bn = nn.BatchNorm2d(n_out, eps=BN_EPS)
        self.act = nn.PReLU(n_out)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _ESPBranches(nn.Module):
    """Reduce (``c1``) -> five dilated 3x3 branches (``d1``..``d16``) -> HFF -> concat."""

    def __init__(self, n_in, n_out, reduce_kernel, reduce_stride):
        super().__init__()
        n = n_out // 5
        n1 = n_out - 4 * n
        self.c1 = ConvOnly(n_in, n, reduce_kernel, reduce_stride)
        self.d1 = ConvOnly(n, n1, 3, dilation=1)
        self.d2 = ConvOnly(n, n, 3, dilation=2)
        self.d4 = ConvOnly(n, n, 3, dilation=4)
        self.d8 = ConvOnly(n, n, 3, dilation=8)
        self.d16 = ConvOnly(n, n, 3, dilation=16)

    def branches(self, x):
        r = self.c1(x)
        s2 = self.d2(r)
        s4 = s2 + self.d4(r)
        s8 = s4 + self.d8(r)
        s16 = s8 + self.d16(r)
        return torch.cat([self.d1(r), s2, s4, s8, s16], 1)


class StridedESP(_ESPBranches):
    """Down-sampling ESP module: 3x3 stride-2 reduce, no residual, then ``bn`` + ``act``."""

    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out, reduce_kernel=3, reduce_stride=2)
        self.bn = nn.BatchNorm2d(n_out, eps=BN_EPS)
        self.act = nn.PReLU(n_out)

    def forward(self, x):
        return self.act(self.bn(self.branches(x)))


class ESP(_ESPBranches):
    """ESP module: 1x1 reduce, optional identity residual, then ``bn`` (a BNPReLU)."""

    def __init__(self, n_in, n_out, residual=True):
        super().__init__(n_in, n_out, reduce_kernel=1, reduce_stride=1)
        self.bn = BNPReLU(n_out)
        self.residual = residual

    def forward(self, x):
        y = self.branches(x)
        if self.residual:
            y = y + x
        return self.bn(y)


class ESPNetC(nn.Module):
    """The ESPNet-C encoder; returns (level-1 features, 131-ch 1/4 features, 1/8 logits)."""

    def __init__(self, classes=NUM_CLASSES, p=2, q=8):
        super().__init__()
        self.level1 = ConvBNPReLU(3, 16, 3, stride=2)
        self.b1 = BNPReLU(16 + 3)
        self.level2_0 = StridedESP(16 + 3, 64)
        self.level2 = nn.ModuleList([ESP(64, 64) for _ in range(p)])
        self.b2 = BNPReLU(128 + 3)
        self.level3_0 = StridedESP(128 + 3, 128)
        self.level3 = nn.ModuleList([ESP(128, 128) for _ in range(q)])
        self.b3 = BNPReLU(256)
        self.classifier = ConvOnly(256, classes, 1)
        # Input reinforcement: the image average-pooled (3x3, stride 2, pad 1) once / twice.
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, image):
        half = self.pool(image)
        quarter = self.pool(half)
        l1 = self.level1(image)
        l1_cat = self.b1(torch.cat([l1, half], 1))
        l2_0 = self.level2_0(l1_cat)
        l2 = l2_0
        for block in self.level2:
            l2 = block(l2)
        l2_cat = self.b2(torch.cat([l2, l2_0, quarter], 1))
        l3_0 = self.level3_0(l2_cat)
        l3 = l3_0
        for block in self.level3:
            l3 = block(l3)
        l3_cat = self.b3(torch.cat([l3_0, l3], 1))
        return l1, l2_cat, self.classifier(l3_cat)


class ESPNet(nn.Module):
    """ESPNet with the light-weight decoder; input 1x3xHxW (H, W multiples of 8), output 1x20xHxW."""

    def __init__(self, classes=NUM_CLASSES, p=2, q=8):
        super().__init__()
        self.encoder = ESPNetC(classes, p, q)
        self.level3_C = ConvOnly(128 + 3, classes, 1)
        self.br = nn.BatchNorm2d(classes, eps=BN_EPS)
        self.conv = ConvBNPReLU(16 + classes, classes, 3)
        self.up_l3 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False))
        self.combine_l2_l3 = nn.Sequential(BNPReLU(2 * classes), ESP(2 * classes, classes, residual=False))
        self.up_l2 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False), BNPReLU(classes))
        self.classifier = nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False)

    def forward(self, image):
        l1, l2_cat, coarse = self.encoder(image)
        up3 = self.up_l3(self.br(coarse))
        merged = self.up_l2(self.combine_l2_l3(torch.cat([self.level3_C(l2_cat), up3], 1)))
        return self.classifier(self.conv(torch.cat([merged, l1], 1)))


def load_state(model, path):
    """Load a published state_dict into ``model``; only BatchNorm ``num_batches_tracked`` may be missing.

    Returns the list of missing keys (all ``num_batches_tracked``); raises ``RuntimeError`` on
    any other missing key, any unexpected key, or a shape mismatch.
    """
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and not any(k.endswith(".weight") for k in state):
        state = state["state_dict"]
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if bad_missing or result.unexpected_keys:
        raise RuntimeError("%s does not match %s: missing %s, unexpected %s" % (
            path, type(model).__name__, bad_missing, list(result.unexpected_keys)))
    model.eval()
    return list(result.missing_keys)


def load_espnet(path, p=2, q=8):
    """ESPNet (p, q) with the published Cityscapes weights at ``path``, in eval mode."""
    model = ESPNet(NUM_CLASSES, p, q)
    load_state(model, path)
    return model
