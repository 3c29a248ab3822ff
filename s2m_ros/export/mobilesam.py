"""MobileSAM (Zhang et al. 2023, "Faster Segment Anything") to ONNX: image encoder + batched prompt decoder.

Two graphs, mirroring SAM's split (encode the image once, decode many prompts against it):

* **Encoder** ``mobilesam_encoder.onnx``: input ``image`` 1x3x1024x1024 float32, the RGB image
  resized (longest side 1024), normalised with SAM's pixel mean/std and zero-padded bottom/right —
  that preprocessing stays outside the graph, in numpy (:mod:`s2m_ros.segmentation.mobilesam`), where it
  is exact and cheap; output ``image_embeddings`` 1x256x64x64.
* **Decoder** ``mobilesam_decoder.onnx``: ONE image embedding + a dynamic batch of N prompts.
  Inputs:

  - ``image_embeddings`` 1x256x64x64;
  - ``point_coords`` NxPx2 float32: (x, y) in the 1024 input frame (already scaled as SAM's
    ResizeLongestSide does);
  - ``point_labels`` NxP float32: 1 positive point, 0 negative point, 2/3 top-left/bottom-right
    box corner, -1 SAM's "not a point" token (SAM appends one to point-only prompts; the caller
    does that here, as with SAM's own ONNX export), and **-2 padding**: a point ignored exactly
    (masked out of every attention where it would be a key), so prompts with different numbers
    of points share a batch and each gets the result it gets alone;
  - ``mask_windows`` Nx4 int64: per prompt (token row, token col, rows, cols) of the window of the
    64x64 token grid whose masks are wanted (one token = 4x4 low-res pixels; rows/cols are the
    largest over the batch; windows must lie inside the grid). ``[0, 0, 64, 64]`` gives whole masks.

  Outputs ``low_res_masks`` Nx4x(4 rows)x(4 cols) — mask logits in the 256x256 frame of the padded
  1024 input (Nx4x256x256 for whole windows), index 0 SAM's single-mask output, 1..3 its multimask
  outputs — and ``iou_predictions`` Nx4. No mask input (the no-mask dense embedding), no
  upsampling to the image size in the graph.

Where the decoder's cost goes and what this graph changes. Same function as the original
``prompt_encoder`` + ``mask_decoder`` (equal to float rounding, about 1e-6), re-associated:

* Prompt-independent work once per call, not per prompt: the dense positional encoding and its
  projections are constants; ``embedding + no_mask_embed`` and, in the first two-way block, the
  image-side key/value projections (token->image) and query projection (image->token) run once
  with batch 1 and broadcast. SAM's ``repeat_interleave`` of the embedding per prompt is gone.
* Per-prompt work on the 4096 image tokens is inherent: the first block's image->token attention
  gives every prompt its own 4096x256 image tokens, which the second block and the final attention
  read and update. Each projection of those tokens is re-associated with the few prompt tokens
  (T = 5 output tokens + points): token->image scores ``q_h . (W_k,h x + b_k)`` as
  ``(W_k,h^T q_h) . x`` (the bias term is constant along the softmax and cancels), values as
  ``(softmax @ x) W_v,h^T + b_v``; image->token outputs as ``sum_h A_h (V_h W_o,h^T)``, so each
  product costs 4096 x 256 x 8T multiply-adds instead of 4096 x 256 x 128 (a gain while T < 16).
  Adding the positional encoding to the per-prompt tokens is replaced by constant projections of
  it, block 1's output bias is folded into block 0's LayerNorm bias, and the padding mask rides in
  existing products, which removes several 4096x256 elementwise passes per prompt. The final
  attention runs for the 5 output tokens only (the point tokens' outputs are never read). What remains
  per prompt is inherent to SAM's two-way transformer: five 4096 x 256 x 8T products (~67 M
  multiply-adds each for a box + point, T = 8) and two 4096 x 256 x 40 ones, two LayerNorms over
  4096x256 and softmaxes over 4096 x 8T: about 11 ms per box + point prompt on one core of the
  development machine, against about 6.5 ms of prompt-independent work per call (ONNX Runtime
  kernel times, see :mod:`s2m_ros.export.bench_mobilesam`).
* The output upscaling (two 2x2/stride-2 transposed convs, LayerNorm2d, GELU, hypernetwork
  product: about 0.4 G multiply-adds per prompt for a whole 256x256 mask) acts on each token
  separately, so it runs only on the requested window of tokens — exactly that window of the whole
  mask — as channels-last GEMMs with ONNX LayerNormalization.

``export_mobilesam`` writes both graphs; ``parity_check`` compares them with torch; ``main`` is
the CLI (``python -m s2m_ros.export.mobilesam --checkpoint mobile_sam.pt --out-dir models``), also
``s2m export mobilesam ...``.
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from s2m_ros.export.torch_compat import import_mobile_sam
# graph <-> runtime contract values live with the runtime (PAD_LABEL: ignored padding point; -1 is
# SAM's own "not a point" token)
from s2m_ros.segmentation.mobilesam import IMG_SIZE, PAD_LABEL, full_windows  # noqa: F401 (full_windows re-exported)

EMBED_HW = 64  # = LOW_RES // 4 of the runtime
NUM_MASK_TOKENS = 4
ENCODER_FILE = "mobilesam_encoder.onnx"
DECODER_FILE = "mobilesam_decoder.onnx"
MASKED = -1e9  # attention score of a padded key: exp() underflows to exactly 0, unlike -inf never NaN in a product


class CheckpointError(ValueError):
    """A checkpoint that is not a MobileSAM (vit_t) state_dict; the message says what is wrong."""


def _extract_state_dict(obj, path):
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError("%s: expected a state_dict (dict of tensors), got %s" % (path, type(obj).__name__))
    return obj


def build_mobilesam(checkpoint=None):
    """MobileSAM ``vit_t`` in eval mode: random weights, or the state_dict at ``checkpoint``.

    The public ``mobile_sam.pt`` is a plain state_dict of this model. Missing or unexpected keys
    and shape mismatches raise :class:`CheckpointError` naming a few of them (a SAM vit_b/h/l
    checkpoint or a different model ends up here); a missing file raises FileNotFoundError.
    """
    mobile_sam = import_mobile_sam()
    model = mobile_sam.sam_model_registry["vit_t"]()
    model.eval()
    if checkpoint is None:
        return model
    path = str(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError("MobileSAM checkpoint not found: %s" % path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors: not a torch checkpoint
        raise CheckpointError("%s: cannot be read as a torch checkpoint (%s)" % (path, exc)) from exc
    state = _extract_state_dict(obj, path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            "%s is not a MobileSAM vit_t state_dict: %d missing keys (e.g. %s), %d unexpected keys (e.g. %s)"
            % (path, len(missing), ", ".join(missing[:3]) or "-", len(unexpected), ", ".join(unexpected[:3]) or "-"))
    bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError("%s: %d tensors have the wrong shape, e.g. %s: %s, expected %s"
                              % (path, len(bad), k, tuple(state[k].shape), tuple(expected[k].shape)))
    model.load_state_dict(state, strict=True)
    return model


def random_checkpoint(path, seed=0):
    """Save a seeded random-weight MobileSAM state_dict to ``path`` (stand-in for mobile_sam.pt)."""
    torch.manual_seed(int(seed))
    model = build_mobilesam(None)
    os.makedirs(os.path.dirname(os.path.abspath(str(path))), exist_ok=True)
    torch.save(model.state_dict(), str(path))
    return str(path)


class EncoderOnnx(nn.Module):
    """TinyViT image encoder: 1x3x1024x1024 normalised, padded RGB -> 1x256x64x64 embedding."""

    def __init__(self, sam):
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image):
        return self.image_encoder(image)


def _heads(x, n_heads):
    """B x L x C -> B x H x L x C/H."""
    b, n, c = x.shape
    return x.reshape(b, n, n_heads, c // n_heads).transpose(1, 2)


def _merge(x):
    """B x H x L x D -> B x L x H*D."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _head_weights(linear, n_heads):
    """A Linear's weight (out x in) split by output rows: H x (out/H) x in."""
    w = linear.weight.detach()
    return w.reshape(n_heads, w.shape[0] // n_heads, w.shape[1]).clone()


class BatchedPromptDecoder(nn.Module):
    """SAM prompt encoder + mask decoder for one image embedding and N prompts (see module doc).

    ``forward(image_embeddings 1x256x64x64, point_coords NxPx2, point_labels NxP, mask_windows Nx4)``
    -> ``(low_res_masks Nx4x(4 rows)x(4 cols), iou_predictions Nx4)``; whole windows
    (:func:`full_windows`) give Nx4x256x256.
    """

    def __init__(self, sam):
        super().__init__()
        pe_enc = sam.prompt_encoder
        dec = sam.mask_decoder
        tr = dec.transformer
        if len(tr.layers) != 2 or dec.num_mask_tokens != NUM_MASK_TOKENS:
            raise ValueError("unexpected MobileSAM decoder layout")
        self.n_heads = tr.layers[0].cross_attn_token_to_image.num_heads
        with torch.no_grad():
            dense_pe = pe_enc.get_dense_pe()  # 1 x 256 x 64 x 64
        self.register_buffer("image_pe", dense_pe.flatten(2).transpose(1, 2).contiguous())  # 1 x 4096 x 256
        self.register_buffer("no_mask", pe_enc.no_mask_embed.weight.detach().reshape(1, 1, -1).clone())
        self.register_buffer("gauss", pe_enc.pe_layer.positional_encoding_gaussian_matrix.detach().clone())
        # row label+1: -1 not-a-point, 0 negative, 1 positive, 2/3 box corners
        table = [pe_enc.not_a_point_embed.weight] + [e.weight for e in pe_enc.point_embeddings]
        self.register_buffer("label_embed", torch.cat([t.detach() for t in table], 0).clone())
        self.register_buffer("output_tokens", torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], 0)
                             .detach().unsqueeze(0).clone())  # 1 x 5 x 256
        self.layers = tr.layers
        self.final_attn = tr.final_attn_token_to_image
        self.norm_final = tr.norm_final_attn
        self.hyper_mlps = dec.output_hypernetworks_mlps
        self.iou_head = dec.iou_prediction_head
        # Constants of the re-associated attentions (see module doc), per head. Index 1 = block 1,
        # 2 = final attention. Block 1's image->token output bias bo1 is folded into block 0's
        # norm4 bias (keys1' = keys1 + bo1), and the corrections that fold implies into the
        # constants below; terms constant along a softmax axis are dropped.
        h = self.n_heads
        pe_flat = self.image_pe[0]  # 4096 x 256
        l0, l1 = tr.layers
        bo1 = l1.cross_attn_image_to_token.out_proj.bias.detach()
        self.register_buffer("bo0", l0.cross_attn_image_to_token.out_proj.bias.detach().reshape(1, 1, -1).clone())
        self.register_buffer("norm4_0_bias", (l0.norm4.bias.detach() + bo1).clone())
        for i, t2i in ((1, l1.cross_attn_token_to_image), (2, tr.final_attn_token_to_image)):
            wk = _head_weights(t2i.k_proj, h)  # H x d x 256
            wv = _head_weights(t2i.v_proj, h)
            bv = t2i.v_proj.bias.detach().reshape(h, 1, -1)
            if i == 1:  # values read keys1' = keys1 + bo1 (softmax rows sum to 1)
                bv = bv - (wv @ bo1.reshape(1, -1, 1)).reshape(h, 1, -1)
            self.register_buffer("t2i_wk_%d" % i, wk.clone())
            self.register_buffer("t2i_kpT_%d" % i, (wk @ pe_flat.T).clone())  # H x d x 4096: W_k,h pe
            self.register_buffer("t2i_wvT_%d" % i, wv.transpose(1, 2).contiguous())  # H x 256 x d
            self.register_buffer("t2i_bv_%d" % i, bv.clone())
        for i, layer in enumerate(tr.layers):
            i2t = layer.cross_attn_image_to_token
            wo = i2t.out_proj.weight.detach()  # 256 x 128
            self.register_buffer("i2t_woT_%d" % i, wo.reshape(wo.shape[0], h, -1).permute(1, 2, 0).contiguous())
        i2t = l1.cross_attn_image_to_token
        wq = _head_weights(i2t.q_proj, h)  # H x d x 256
        bq = i2t.q_proj.bias.detach().reshape(h, -1, 1) - wq @ bo1.reshape(1, -1, 1)  # queries read keys1'
        self.register_buffer("i2t_wq_1", wq.clone())
        self.register_buffer("i2t_bq_1", bq.clone())  # H x d x 1
        self.register_buffer("i2t_qp_1", (wq @ pe_flat.T).transpose(1, 2).contiguous())  # H x 4096 x d
        up = dec.output_upscaling
        w1, w2 = up[0].weight.detach(), up[3].weight.detach()  # in x out x 2 x 2
        self.c1, self.c2 = w1.shape[1], w2.shape[1]
        self.register_buffer("up_w1", w1.permute(0, 2, 3, 1).reshape(w1.shape[0], -1).clone())  # 256 x (4*64)
        self.register_buffer("up_b1", up[0].bias.detach().repeat(4).clone())
        self.register_buffer("up_w2", w2.permute(0, 2, 3, 1).reshape(w2.shape[0], -1).clone())  # 64 x (4*32)
        self.register_buffer("up_b2", up[3].bias.detach().repeat(4).clone())
        self.up_ln = up[1]

    # --- prompt encoding ---------------------------------------------------------------
    def embed_points(self, coords, labels):
        """SAM's sparse embedding: random-Fourier PE of (coords + 0.5) / 1024 plus a per-label vector."""
        xy = (coords + 0.5) / float(IMG_SIZE)
        xy = (2.0 * xy - 1.0) @ self.gauss
        xy = 2.0 * math.pi * xy
        pe = torch.cat([torch.sin(xy), torch.cos(xy)], dim=-1)
        is_point = (labels >= 0).unsqueeze(-1).to(pe.dtype)
        index = torch.clamp(labels, -1.0, 3.0).to(torch.int64) + 1
        return pe * is_point + self.label_embed[index]

    # --- attention pieces ----------------------------------------------------------------
    def _self_attn(self, attn, q, k, v, key_bias):
        qh, kh, vh = (_heads(p(x), self.n_heads) for p, x in ((attn.q_proj, q), (attn.k_proj, k), (attn.v_proj, v)))
        s = qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1]) + key_bias
        return attn.out_proj(_merge(torch.softmax(s, -1) @ vh))

    def _t2i_shared(self, attn, q, k_img, v_img):
        """Token->image attention against batch-1 image keys/values (first block)."""
        qh = _heads(attn.q_proj(q), self.n_heads)  # N x H x T x d
        kh = _heads(attn.k_proj(k_img), self.n_heads)  # 1 x H x 4096 x d
        vh = _heads(attn.v_proj(v_img), self.n_heads)
        s = qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1])
        return attn.out_proj(_merge(torch.softmax(s, -1) @ vh))

    def _t2i_reassoc(self, attn, i, q, keys):
        """Token->image attention against per-prompt image tokens ``keys`` (+ the dense PE), re-associated."""
        n, t, _ = q.shape
        h = self.n_heads
        qh = _heads(attn.q_proj(q), h)  # N x H x T x d
        d = qh.shape[-1]
        q_img = (qh @ getattr(self, "t2i_wk_%d" % i)).reshape(n, h * t, -1)  # N x HT x 256
        s = q_img @ keys.transpose(1, 2) + (qh @ getattr(self, "t2i_kpT_%d" % i)).reshape(n, h * t, -1)
        ctx = (torch.softmax(s / math.sqrt(d), -1) @ keys).reshape(n, h, t, -1)  # N x H x T x 256
        out = ctx @ getattr(self, "t2i_wvT_%d" % i) + getattr(self, "t2i_bv_%d" % i)  # N x H x T x d
        return attn.out_proj(_merge(out))

    def _i2t_out(self, attn, i, probs, tokens_v):
        """sum_h A_h (V_h W_o,h^T) for probs N x 4096 x H x T (output bias left to the caller)."""
        n, hw, h, t = probs.shape
        vh = _heads(attn.v_proj(tokens_v), h)  # N x H x T x d
        vw = (vh @ getattr(self, "i2t_woT_%d" % i)).reshape(n, h * t, -1)  # N x HT x 256
        return probs.reshape(n, hw, h * t) @ vw

    def _i2t_shared(self, attn, q_img, k_tok, v_tok, key_bias):
        """Image->token attention with batch-1 image queries (first block)."""
        qh = _heads(attn.q_proj(q_img), self.n_heads)  # 1 x H x 4096 x d
        kh = _heads(attn.k_proj(k_tok), self.n_heads)  # N x H x T x d
        # the padding mask rides along as one more (query = 1, key = bias) channel of the product
        qh = torch.cat([qh / math.sqrt(qh.shape[-1]), torch.ones_like(qh[..., :1])], -1)
        kh = torch.cat([kh, key_bias.reshape(kh.shape[0], 1, -1, 1).expand(-1, kh.shape[1], -1, -1)], -1)
        p = torch.softmax(qh @ kh.transpose(-1, -2), -1).permute(0, 2, 1, 3)  # N x 4096 x H x T
        return self._i2t_out(attn, 0, p, v_tok)

    def _i2t_reassoc(self, attn, keys, k_tok, v_tok, key_bias):
        """Block 1's image->token attention with per-prompt image queries (keys1' + PE), re-associated."""
        h = self.n_heads
        kh = _heads(attn.k_proj(k_tok), h)  # N x H x T x d
        n, _, t, d = kh.shape
        k_img = (kh @ self.i2t_wq_1).reshape(n, h * t, -1)  # N x HT x 256
        # q-bias . k varies along T; the padding mask joins it
        k_bias = (kh @ self.i2t_bq_1).reshape(n, 1, h, t) + key_bias.reshape(n, 1, 1, t)
        s_pe = (self.i2t_qp_1 @ kh.transpose(-1, -2)).permute(0, 2, 1, 3)  # N x 4096 x H x T
        s = (keys @ k_img.transpose(1, 2) + k_bias.reshape(n, 1, h * t)).reshape(n, -1, h, t) + s_pe
        p = torch.softmax(s / math.sqrt(d), -1)  # N x 4096 x H x T
        return self._i2t_out(attn, 1, p, v_tok)

    # --- forward -------------------------------------------------------------------------
    def forward(self, image_embeddings, point_coords, point_labels, mask_windows):
        n = point_coords.shape[0]
        sparse = self.embed_points(point_coords, point_labels)
        tokens = torch.cat([self.output_tokens.expand(n, -1, -1), sparse], dim=1)  # N x T x 256
        pad = torch.cat([torch.zeros_like(point_labels[:, :1]).expand(-1, self.output_tokens.shape[1]),
                         point_labels], dim=1) <= PAD_LABEL
        key_bias = torch.where(pad, torch.full_like(pad, MASKED, dtype=tokens.dtype),
                               torch.zeros_like(pad, dtype=tokens.dtype))[:, None, None, :]  # N x 1 x 1 x T
        src = image_embeddings.flatten(2).transpose(1, 2) + self.no_mask  # 1 x 4096 x 256
        src_pe = src + self.image_pe

        # block 0 (skip_first_layer_pe): image side identical for all prompts
        l0 = self.layers[0]
        q = l0.norm1(self._self_attn(l0.self_attn, tokens, tokens, tokens, key_bias))
        q = l0.norm2(q + self._t2i_shared(l0.cross_attn_token_to_image, q + tokens, src_pe, src))
        q = l0.norm3(q + l0.mlp(q))
        x = (src + self.bo0) + self._i2t_shared(l0.cross_attn_image_to_token, src_pe, q + tokens, q, key_bias)
        c = int(self.no_mask.shape[-1])
        keys = F.layer_norm(x, (c,), l0.norm4.weight, self.norm4_0_bias, l0.norm4.eps)  # keys1 + bo1

        # block 1: per-prompt image tokens
        l1 = self.layers[1]
        qp = q + tokens
        q = l1.norm1(q + self._self_attn(l1.self_attn, qp, qp, q, key_bias))
        q = l1.norm2(q + self._t2i_reassoc(l1.cross_attn_token_to_image, 1, q + tokens, keys))
        q = l1.norm3(q + l1.mlp(q))
        keys = l1.norm4(keys + self._i2t_reassoc(l1.cross_attn_image_to_token, keys, q + tokens, q, key_bias))

        # final token->image attention: only the output tokens (IoU + mask tokens) are read after it
        k = self.output_tokens.shape[1]
        q, tokens = q[:, :k], tokens[:, :k]
        q = self.norm_final(q + self._t2i_reassoc(self.final_attn, 2, q + tokens, keys))

        iou_pred = self.iou_head(q[:, 0, :])
        hyper = torch.stack([mlp(q[:, 1 + k, :]) for k, mlp in enumerate(self.hyper_mlps)], dim=1)  # N x 4 x 32

        masks = self.upscale(keys, hyper, mask_windows)
        return masks, iou_pred

    def upscale(self, keys, hyper, mask_windows):
        """Output upscaling + hypernetwork product on the window tokens only.

        The two 2x2/stride-2 transposed convs, LayerNorm2d and GELU act on each 64x64 token
        separately (a token becomes a 4x4 block of the 256x256 mask), so computing them on a window
        of tokens gives exactly that window of the full mask. Runs channels-last: token -> 2x2 (a, b)
        -> 2x2 (c, e) sub-pixels.
        """
        n = keys.shape[0]
        th = mask_windows[:, 2].max()
        tw = mask_windows[:, 3].max()
        rows = torch.clamp(mask_windows[:, 0:1] + torch.arange(th).unsqueeze(0), 0, EMBED_HW - 1)  # N x th
        cols = torch.clamp(mask_windows[:, 1:2] + torch.arange(tw).unsqueeze(0), 0, EMBED_HW - 1)  # N x tw
        index = (rows.unsqueeze(2) * EMBED_HW + cols.unsqueeze(1)).reshape(n, -1, 1)  # N x th*tw x 1
        keys = torch.gather(keys, 1, index.expand(-1, -1, keys.shape[2]))
        y = (keys @ self.up_w1 + self.up_b1).reshape(n, -1, 4, self.c1)
        y = F.gelu(F.layer_norm(y, (self.c1,), self.up_ln.weight, self.up_ln.bias, self.up_ln.eps))
        y = F.gelu(y @ self.up_w2 + self.up_b2)  # N x th*tw x 4 x (4*32)
        m = hyper @ y.reshape(n, -1, self.c2).transpose(1, 2)  # N x 4 x (th*tw*16)
        m = m.reshape(n * NUM_MASK_TOKENS, th, tw, 2, 2, 2, 2)  # (n k), y, x, a, b, c, e
        return m.permute(0, 1, 3, 5, 2, 4, 6).reshape(n, NUM_MASK_TOKENS, th * 4, tw * 4)


def reference_decode(sam, image_embeddings, point_coords, point_labels):
    """The original mobile_sam path for ONE prompt: ``prompt_encoder`` + ``mask_decoder.predict_masks``.

    ``point_coords`` Px2 and ``point_labels`` P in the decoder's convention: labels 2/3 (box
    corners) go through ``_embed_boxes``, the others through ``_embed_points`` without SAM's
    automatic padding (a -1 "not a point" token is embedded only where the caller put one, as with
    ``SamOnnxModel``), padding (-2) is dropped. Returns (masks 4x256x256, iou 4) as numpy.
    """
    coords = torch.as_tensor(np.asarray(point_coords, np.float32))
    labels = torch.as_tensor(np.asarray(point_labels, np.float32))
    keep = labels > PAD_LABEL
    coords, labels = coords[keep], labels[keep]
    is_box = (labels == 2) | (labels == 3)
    pe = sam.prompt_encoder
    parts = []
    with torch.no_grad():
        if (~is_box).any():
            parts.append(pe._embed_points(coords[~is_box][None], labels[~is_box][None], pad=False))
        if is_box.any():
            box = torch.cat([coords[labels == 2][0], coords[labels == 3][0]]).reshape(1, 4)
            parts.append(pe._embed_boxes(box))
        sparse = torch.cat(parts, dim=1)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, EMBED_HW, EMBED_HW)
        emb = torch.as_tensor(np.asarray(image_embeddings, np.float32))
        masks, iou = sam.mask_decoder.predict_masks(
            image_embeddings=emb, image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
    return masks[0].numpy(), iou[0].numpy()


def _export(module, args, path, input_names, output_names, dynamic_axes, opset):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                          dynamo=False)


def export_encoder(sam, path, opset=17):
    """Write the encoder graph to ``path``."""
    dummy = torch.zeros(1, 3, IMG_SIZE, IMG_SIZE)
    _export(EncoderOnnx(sam).eval(), (dummy,), path, ["image"], ["image_embeddings"], None, opset)
    return path


def export_decoder(sam, path, opset=17):
    """Write the batched prompt decoder graph to ``path`` (dynamic prompts and points)."""
    emb = torch.zeros(1, 256, EMBED_HW, EMBED_HW)
    coords = torch.tensor([[[100.0, 120.0], [50.0, 60.0], [300.0, 400.0]]] * 2)
    labels = torch.tensor([[1.0, 2.0, 3.0], [PAD_LABEL, 2.0, 3.0]])
    windows = torch.tensor([[3, 5, 20, 30], [40, 10, 20, 30]], dtype=torch.int64)
    _export(BatchedPromptDecoder(sam).eval(), (emb, coords, labels, windows), path,
            ["image_embeddings", "point_coords", "point_labels", "mask_windows"], ["low_res_masks", "iou_predictions"],
            {"point_coords": {0: "num_prompts", 1: "num_points"}, "point_labels": {0: "num_prompts", 1: "num_points"},
             "mask_windows": {0: "num_prompts"},
             "low_res_masks": {0: "num_prompts", 2: "window_rows", 3: "window_cols"},
             "iou_predictions": {0: "num_prompts"}}, opset)
    return path


def ort_session(path, threads=2):
    """A CPU ONNX Runtime session through the project's backend (parity checks, benchmarks)."""
    from s2m_ros.inference.backend import create_session

    return create_session(str(path), providers=["CPUExecutionProvider"], threads=threads)


def parity_check(sam, encoder_path, decoder_path, seed=0):
    """Max abs differences ONNX Runtime vs torch: encoder output, decoder masks/IoU vs the original path."""
    g = torch.Generator().manual_seed(int(seed))
    image = torch.randn(1, 3, IMG_SIZE, IMG_SIZE, generator=g)
    with torch.no_grad():
        emb_t = sam.image_encoder(image).numpy()
    emb_o = ort_session(encoder_path).run({"image": image.numpy()})["image_embeddings"]
    coords = np.array([[[400.0, 300.0], [120.0, 80.0], [250.0, 200.0], [600.0, 500.0]],
                       [[700.0, 650.0], [640.0, 560.0], [830.0, 760.0], [0.0, 0.0]]], np.float32)
    labels = np.array([[1, 0, 2, 3], [1, 2, 3, PAD_LABEL]], np.float32)
    out = ort_session(decoder_path).run({"image_embeddings": emb_t, "point_coords": coords,
                                         "point_labels": labels, "mask_windows": full_windows(2)})
    masks_o, iou_o = out["low_res_masks"], out["iou_predictions"]
    d_mask = d_iou = 0.0
    for i in range(coords.shape[0]):
        m_t, iou_t = reference_decode(sam, emb_t, coords[i], labels[i])
        d_mask = max(d_mask, float(np.abs(m_t - masks_o[i]).max()))
        d_iou = max(d_iou, float(np.abs(iou_t - iou_o[i]).max()))
    return {"encoder_max_abs": float(np.abs(emb_t - emb_o).max()), "decoder_mask_max_abs": d_mask,
            "decoder_iou_max_abs": d_iou, "mask_logit_range": float(np.abs(masks_o).max())}


def export_mobilesam(checkpoint, out_dir, opset=17):
    """Export encoder and decoder from ``checkpoint`` (a MobileSAM state_dict path; None = random
    weights from torch's current RNG state) into ``out_dir``; returns ``(encoder_path, decoder_path)``."""
    sam = build_mobilesam(checkpoint)
    os.makedirs(str(out_dir), exist_ok=True)
    enc = export_encoder(sam, os.path.join(str(out_dir), ENCODER_FILE), opset)
    dec = export_decoder(sam, os.path.join(str(out_dir), DECODER_FILE), opset)
    return enc, dec


def main(argv=None):
    """CLI: export MobileSAM encoder/decoder ONNX files and print parity figures (JSON) and paths."""
    ap = argparse.ArgumentParser(prog="python -m s2m_ros.export.mobilesam", description=main.__doc__)
    ap.add_argument("--checkpoint", help="MobileSAM state_dict (mobile_sam.pt)")
    ap.add_argument("--out-dir", required=True, help="where to write %s and %s" % (ENCODER_FILE, DECODER_FILE))
    ap.add_argument("--random-weights", action="store_true",
                    help="no checkpoint: seeded random weights (tests, benchmarks; masks are meaningless)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch parity check")
    args = ap.parse_args(argv)
    if bool(args.checkpoint) == bool(args.random_weights):
        ap.error("give exactly one of --checkpoint or --random-weights")
    torch.manual_seed(args.seed)
    try:
        sam = build_mobilesam(args.checkpoint)
    except (FileNotFoundError, CheckpointError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.perf_counter()
    enc = export_encoder(sam, os.path.join(args.out_dir, ENCODER_FILE), args.opset)
    t1 = time.perf_counter()
    dec = export_decoder(sam, os.path.join(args.out_dir, DECODER_FILE), args.opset)
    t2 = time.perf_counter()
    report = {"encoder": enc, "decoder": dec, "encoder_export_s": round(t1 - t0, 2),
              "decoder_export_s": round(t2 - t1, 2), "encoder_mb": round(os.path.getsize(enc) / 1e6, 2),
              "decoder_mb": round(os.path.getsize(dec) / 1e6, 2)}
    if not args.no_check:
        report["parity"] = parity_check(sam, enc, dec, seed=args.seed)
    print(json.dumps(report, indent=2))
    print(enc)
    print(dec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
