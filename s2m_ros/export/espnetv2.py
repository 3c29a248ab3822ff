"""ESPNetv2 (Mehta et al., CVPR 2019) segmentation network, width scale s=2.0, for Cityscapes.

Written from the paper and the published weight key list (module names match the released
state_dict of the EdgeNets model zoo). The parts, in the paper's terms:

* EESP unit: grouped 1x1 "reduce" (K=4 groups) to n = C/K channels -> K parallel depth-wise
  3x3 convolutions whose dilation is chosen from a receptive-field list (3, 5, 7, 9 pixels ->
  d = 1, 2, 3, 4; sizes above the level's limit fall back to d=1, and the list is sorted so
  the repeated d=1 branches come first) -> hierarchical feature fusion (each branch adds the
  previous fused branch) -> concat -> BN+PReLU -> grouped 1x1 "expand" (K groups) + BN ->
  identity residual when shapes match -> PReLU.
* Strided EESP (down-sampling unit): an EESP with stride-2 depth-wise convolutions (no residual,
  no activation) concatenated with a 3x3/2 average pool of its input, plus an input-image
  shortcut (the image average-pooled down to the same size -> 3x3 CBR (3 ch) -> 1x1 CB to the
  output width), then PReLU.
* Encoder (s=2.0 widths 32/128/256/512): 3x3/2 CBR -> strided EESP (1/4) -> strided EESP
  (1/8) + 3 EESP -> strided EESP (1/16) + 7 EESP. The classification levels 5 are dropped.
* Segmentation head (the EdgeNets ESPNetv2 segmentation decoder): at each level an "efficient
  pyramid pooling" block (1x1 CBR projection to 10 ch; the map resampled to 2.0, 1.5, 1.0, 0.5,
  0.1 of its size (min 5 px), a depth-wise 3x3 conv each, resampled back; BR over the
  concatenation; channel shuffle; grouped 3x3 CBR; 1x1 conv; BR) and, between levels,
  bilinear x2 upsampling (align_corners=True) added to an "efficient point-wise conv" of the
  encoder skip (grouped 3x3 CBR gated by a sigmoid of a 1x1 conv on the global average), then
  BR. Decoder widths 64, 48, 32, then 20 classes at 1/2 resolution, upsampled bilinearly
  (align_corners=True) to the input size.

BatchNorm epsilon is PyTorch's default 1e-5. Output: 20 channels (19 Cityscapes trainIds +
background), same H x W as the input. Input: RGB in [0, 1], ImageNet mean/std.

Export note: adaptive average pooling to a size that does not divide the input (1.5x and 0.1x
pyramid branches) has no ONNX export in torch; :func:`adaptive_avg_pool2d` computes the same
bins (start = floor(i*in/out), end = ceil((i+1)*in/out)) with average pooling when the ratio is
an integer and with a cumulative sum + gather otherwise, so the same code runs in torch and
ONNX. It needs static spatial sizes, i.e. the ONNX model has a fixed input size.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from s2m_ros.export.espnet import load_state

NUM_CLASSES = 20
# Channels per level for width scale s (levels 1..4); the classification levels are not used.
WIDTHS = {0.5: (16, 32, 64, 128), 1.0: (32, 64, 128, 256), 1.25: (32, 80, 160, 320),
          1.5: (32, 96, 192, 384), 2.0: (32, 128, 256, 512)}
BRANCHES = 4
RECEPTIVE_LIMIT = (13, 11, 9, 7)  # per spatial level (1/4, 1/8, 1/16 ...)
REPEATS = (3, 7)  # EESP units after the level-3 and level-4 down-sampling
PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)


# ---------------------------------------------------------------- building blocks (encoder)

class CBR(nn.Module):
    """Conv + BN + PReLU as ``.conv``/``.bn``/``.act`` (encoder naming)."""

    def __init__(self, n_in, n_out, k, stride=1, groups=1, dilation=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out, k, stride=stride, padding=(k - 1) // 2 * dilation,
                              dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(n_out)
        if act:
            self.act = nn.PReLU(n_out)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if hasattr(self, "act") else x


class BR(nn.Module):
    """BN + PReLU as ``.bn``/``.act``."""

    def __init__(self, channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x):
        return self.act(self.bn(x))


class DWConv(nn.Module):
    """Depth-wise dilated 3x3 conv held as ``.conv``."""

    def __init__(self, channels, stride, dilation):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=dilation, dilation=dilation,
                              groups=channels, bias=False)

    def forward(self, x):
        return self.conv(x)


def branch_dilations(k, receptive_limit):
    """Dilations of the K depth-wise branches: receptive fields 3, 5, ..., capped, sorted."""
    sizes = sorted(s if s <= receptive_limit else 3 for s in (3 + 2 * i for i in range(k)))
    return [(s - 1) // 2 for s in sizes]


class EESP(nn.Module):
    """Extremely efficient spatial pyramid unit (stride 1: residual + PReLU; stride 2: raw)."""

    def __init__(self, n_in, n_out, stride=1, k=BRANCHES, receptive_limit=7):
        super().__init__()
        n = n_out // k
        if n * k != n_out:
            raise ValueError("EESP output width %d must be a multiple of %d" % (n_out, k))
        self.stride = stride
        self.proj_1x1 = CBR(n_in, n, 1, groups=k)
        self.spp_dw = nn.ModuleList([DWConv(n, stride, d) for d in branch_dilations(k, receptive_limit)])
        self.conv_1x1_exp = CBR(n_out, n_out, 1, groups=k, act=False)
        self.br_after_cat = BR(n_out)
        self.module_act = nn.PReLU(n_out)

    def forward(self, x):
        reduced = self.proj_1x1(x)
        fused = [self.spp_dw[0](reduced)]
        for branch in self.spp_dw[1:]:
            fused.append(branch(reduced) + fused[-1])
        out = self.conv_1x1_exp(self.br_after_cat(torch.cat(fused, 1)))
        if self.stride == 2:
            return out  # the down-sampler concatenates, adds the image shortcut and activates
        if out.shape == x.shape:
            out = out + x
        return self.module_act(out)


class StridedEESP(nn.Module):
    """Down-sampling unit: [avgpool(x), EESP/2(x)] + shortcut(image pooled to size), PReLU."""

    def __init__(self, n_in, n_out, receptive_limit, image_channels=3):
        super().__init__()
        self.eesp = EESP(n_in, n_out - n_in, stride=2, receptive_limit=receptive_limit)
        self.inp_reinf = nn.Sequential(CBR(image_channels, image_channels, 3),
                                       CBR(image_channels, n_out, 1, act=False))
        self.act = nn.PReLU(n_out)

    def forward(self, x, image):
        pooled = F.avg_pool2d(x, 3, stride=2, padding=1)
        out = torch.cat([pooled, self.eesp(x)], 1)
        while image.shape[2] != pooled.shape[2]:  # the image pyramid, 3x3/2 average pooling
            if image.shape[2] < pooled.shape[2]:
                raise ValueError("input size must be a multiple of 16 (got a pyramid level %s)" % (
                    tuple(image.shape[2:]),))
            image = F.avg_pool2d(image, 3, stride=2, padding=1)
        return self.act(out + self.inp_reinf(image))


class Encoder(nn.Module):
    """EESPNet levels 1-4 (module names as in the published ``base_net``)."""

    def __init__(self, s=2.0):
        super().__init__()
        w = WIDTHS[s]
        self.level1 = CBR(3, w[0], 3, stride=2)
        self.level2_0 = StridedEESP(w[0], w[1], RECEPTIVE_LIMIT[0])
        self.level3_0 = StridedEESP(w[1], w[2], RECEPTIVE_LIMIT[1])
        self.level3 = nn.ModuleList([EESP(w[2], w[2], receptive_limit=RECEPTIVE_LIMIT[2])
                                     for _ in range(REPEATS[0])])
        self.level4_0 = StridedEESP(w[2], w[3], RECEPTIVE_LIMIT[2])
        self.level4 = nn.ModuleList([EESP(w[3], w[3], receptive_limit=RECEPTIVE_LIMIT[3])
                                     for _ in range(REPEATS[1])])
        self.widths = w

    def forward(self, image):
        l1 = self.level1(image)
        l2 = self.level2_0(l1, image)
        l3 = self.level3_0(l2, image)
        for unit in self.level3:
            l3 = unit(l3)
        l4 = self.level4_0(l3, image)
        for unit in self.level4:
            l4 = unit(l4)
        return l1, l2, l3, l4


# ---------------------------------------------------------------- decoder (Sequential naming)

def _cbr_seq(n_in, n_out, k, groups=1):
    """Conv + BN + PReLU as an ``nn.Sequential`` (decoder naming ``cbr.0/1/2``)."""
    return nn.Sequential(nn.Conv2d(n_in, n_out, k, padding=(k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(n_out), nn.PReLU(n_out))


class SeqCBR(nn.Module):
    def __init__(self, n_in, n_out, k, groups=1):
        super().__init__()
        self.cbr = _cbr_seq(n_in, n_out, k, groups)

    def forward(self, x):
        return self.cbr(x)


class SeqBR(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x):
        return self.br(x)


class ChannelShuffle(nn.Module):
    """Interleave ``groups`` channel groups (ShuffleNet)."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _pool_axis(x, axis, out_size):
    """Adaptive average pooling of one spatial axis (2 or 3) of a static-size tensor."""
    size = x.shape[axis]
    if size == out_size:
        return x
    if size % out_size == 0:
        k = size // out_size
        kernel = (k, 1) if axis == 2 else (1, k)
        return F.avg_pool2d(x, kernel, stride=kernel)
    starts = [(i * size) // out_size for i in range(out_size)]
    ends = [-((-(i + 1) * size) // out_size) for i in range(out_size)]
    csum = torch.cumsum(x, dim=axis)
    zero = torch.zeros_like(x.narrow(axis, 0, 1))
    csum = torch.cat([zero, csum], dim=axis)  # csum[j] = sum of the first j elements
    hi = torch.index_select(csum, axis, torch.tensor(ends, dtype=torch.long))
    lo = torch.index_select(csum, axis, torch.tensor(starts, dtype=torch.long))
    shape = [1, 1, 1, 1]
    shape[axis] = out_size
    width = torch.tensor([e - s for s, e in zip(starts, ends)], dtype=x.dtype).reshape(shape)
    return (hi - lo) / width


def adaptive_avg_pool2d(x, out_hw):
    """``F.adaptive_avg_pool2d`` for static sizes, built from ops that export to ONNX."""
    return _pool_axis(_pool_axis(x, 2, int(out_hw[0])), 3, int(out_hw[1]))


def _resize(x, hw):
    return F.interpolate(x, size=(int(hw[0]), int(hw[1])), mode="bilinear", align_corners=True)


class EfficientPyramidPool(nn.Module):
    """Projection -> depth-wise convs at 5 scales -> BR, shuffle, grouped CBR, 1x1 (-> BR)."""

    def __init__(self, n_in, n_proj, n_out, last=False, scales=PYRAMID_SCALES):
        super().__init__()
        self.scales = tuple(sorted(scales, reverse=True))
        n_s = len(self.scales)
        self.projection_layer = SeqCBR(n_in, n_proj, 1)
        self.stages = nn.ModuleList([nn.Conv2d(n_proj, n_proj, 3, padding=1, groups=n_proj, bias=False)
                                     for _ in self.scales])
        self.merge_layer = nn.Sequential(SeqBR(n_proj * n_s), ChannelShuffle(n_s),
                                         SeqCBR(n_proj * n_s, n_proj, 3, groups=n_proj),
                                         nn.Conv2d(n_proj, n_out, 1, bias=last))
        self.last = last
        if not last:
            self.br = SeqBR(n_out)

    def forward(self, x):
        x = self.projection_layer(x)
        h, w = int(x.shape[2]), int(x.shape[3])
        outs = []
        for scale, conv in zip(self.scales, self.stages):
            hs, ws = max(5, int(math.ceil(h * scale))), max(5, int(math.ceil(w * scale)))
            if scale < 1.0:
                y = _resize(conv(adaptive_avg_pool2d(x, (hs, ws))), (h, w))
            elif scale > 1.0:
                y = adaptive_avg_pool2d(conv(_resize(x, (hs, ws))), (h, w))
            else:
                y = conv(x)
            outs.append(y)
        y = self.merge_layer(torch.cat(outs, 1))
        return y if self.last else self.br(y)


class EfficientPWConv(nn.Module):
    """Grouped 3x3 CBR (groups = gcd) gated per channel by sigmoid(1x1 conv of the global mean)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(n_in, n_out, 1, bias=False), nn.Sigmoid())
        self.expansion_layer = SeqCBR(n_in, n_out, 3, groups=math.gcd(n_in, n_out))

    def forward(self, x):
        return self.expansion_layer(x) * self.wt_layer(x)


class ESPNetv2(nn.Module):
    """ESPNetv2 segmentation; input 1x3xHxW (H, W multiples of 16), output 1x20xHxW logits."""

    def __init__(self, classes=NUM_CLASSES, s=2.0, base_dec=16):
        super().__init__()
        self.base_net = Encoder(s)
        w = self.base_net.widths
        dec = (4 * base_dec, 3 * base_dec, 2 * base_dec, classes)
        proj = min(classes // 2, base_dec)
        self.bu_dec_l1 = EfficientPyramidPool(w[3], proj, dec[0])
        self.bu_dec_l2 = EfficientPyramidPool(dec[0], proj, dec[1])
        self.bu_dec_l3 = EfficientPyramidPool(dec[1], proj, dec[2])
        self.bu_dec_l4 = EfficientPyramidPool(dec[2], proj, dec[3], last=True)
        self.merge_enc_dec_l2 = EfficientPWConv(w[2], dec[0])
        self.merge_enc_dec_l3 = EfficientPWConv(w[1], dec[1])
        self.merge_enc_dec_l4 = EfficientPWConv(w[0], dec[2])
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(dec[0]), nn.PReLU(dec[0]))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(dec[1]), nn.PReLU(dec[1]))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(dec[2]), nn.PReLU(dec[2]))

    @staticmethod
    def _up2(x):
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)

    def forward(self, image):
        l1, l2, l3, l4 = self.base_net(image)
        y = self.bu_dec_l1(l4)
        y = self.bu_dec_l2(self.bu_br_l2(self._up2(y) + self.merge_enc_dec_l2(l3)))
        y = self.bu_dec_l3(self.bu_br_l3(self._up2(y) + self.merge_enc_dec_l3(l2)))
        y = self.bu_dec_l4(self.bu_br_l4(self._up2(y) + self.merge_enc_dec_l4(l1)))
        return _resize(y, image.shape[2:])


def load_espnetv2(path, s=2.0):
    """ESPNetv2 (scale ``s``) with the published Cityscapes weights at ``path``, in eval mode."""
    model = ESPNetv2(NUM_CLASSES, s)
    load_state(model, path)
    return model
