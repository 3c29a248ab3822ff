"""MobileSAM: checkpoint loading, ONNX export parity, batched/windowed decoding, exact ROI mask
upsampling, coordinate transforms, and the ONNX Runtime segmenter against the original torch path.

Random weights (seeded), saved and loaded like the public ``mobile_sam.pt``: the numbers are
meaningless as masks but exercise every operation of the real model.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from s2m_ros.segmentation.prompts import Prompt  # noqa: E402
from s2m_ros.export import mobilesam as ex  # noqa: E402
from s2m_ros.export.torch_compat import ensure_torchvision, import_mobile_sam  # noqa: E402
from s2m_ros.segmentation import mobilesam as rt  # noqa: E402
from s2m_ros.inference.backend import ModelFileError  # noqa: E402

TOL = 1e-4
H, W = 180, 320  # a small 16:9 frame keeps the tests fast


@pytest.fixture(scope="module")
def exported(mobilesam_export):
    """Random-weight checkpoint -> CLI export (with its parity check) -> paths, report, torch model."""
    sam = ex.build_mobilesam(mobilesam_export["ckpt"])
    return dict(mobilesam_export, sam=sam)


@pytest.fixture(scope="module")
def decoder(exported):
    return ex.ort_session(exported["dec"])


@pytest.fixture(scope="module")
def segmenter(exported):
    return rt.MobileSamSegmenter(exported["enc"], exported["dec"], threads=2)


def embedding(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 256, 64, 64)).astype(np.float32)


def run_decoder(sess, emb, coords, labels, windows=None):
    coords = np.asarray(coords, np.float32)
    labels = np.asarray(labels, np.float32)
    if windows is None:
        windows = rt.full_windows(coords.shape[0])
    out = sess.run({"image_embeddings": emb, "point_coords": coords, "point_labels": labels, "mask_windows": windows})
    return [out[n] for n in sess.output_names]


# --- torch compatibility and checkpoints -------------------------------------------------------

def test_torchvision_compat_is_idempotent_and_nms_works():
    assert ensure_torchvision() == ensure_torchvision()
    import torchvision

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(0,1) = 81/119 = 0.68, IoU(3,0) = 0.9: box 3 wins, 0 and 1 overlap it above 0.5
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert torchvision.ops.nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    assert import_mobile_sam().sam_model_registry["vit_t"] is not None


def test_checkpoint_round_trip_and_official_loader(exported):
    state = torch.load(exported["ckpt"], map_location="cpu", weights_only=True)
    mine = ex.build_mobilesam(exported["ckpt"]).state_dict()
    official = import_mobile_sam().build_sam_vit_t(checkpoint=exported["ckpt"]).state_dict()
    assert set(state) == set(mine) == set(official)
    for k in state:
        assert torch.equal(state[k], mine[k]) and torch.equal(state[k], official[k]), k


def test_checkpoint_errors_are_clear(exported, tmp_path):
    state = torch.load(exported["ckpt"], map_location="cpu", weights_only=True)
    renamed = dict(state)
    renamed["mask_decoder.iou_tokens.weight"] = renamed.pop("mask_decoder.iou_token.weight")
    torch.save(renamed, str(tmp_path / "renamed.pt"))
    with pytest.raises(ex.CheckpointError, match=r"1 missing keys \(e\.g\. mask_decoder\.iou_token\.weight\)"
                                                 r".*1 unexpected keys \(e\.g\. mask_decoder\.iou_tokens"):
        ex.build_mobilesam(str(tmp_path / "renamed.pt"))
    reshaped = dict(state)
    reshaped["mask_decoder.iou_token.weight"] = torch.zeros(2, 256)
    torch.save(reshaped, str(tmp_path / "reshaped.pt"))
    with pytest.raises(ex.CheckpointError, match=r"mask_decoder\.iou_token\.weight: \(2, 256\), expected \(1, 256\)"):
        ex.build_mobilesam(str(tmp_path / "reshaped.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ex.CheckpointError, match="cannot be read"):
        ex.build_mobilesam(str(tmp_path / "junk.pt"))
    with pytest.raises(FileNotFoundError):
        ex.build_mobilesam(str(tmp_path / "absent.pt"))
    assert ex.main(["--checkpoint", str(tmp_path / "renamed.pt"), "--out-dir", str(tmp_path)]) == 2


# --- export parity ---------------------------------------------------------------------------

def test_cli_parity_figures(exported):
    parity = exported["report"]["parity"]
    assert parity["encoder_max_abs"] < TOL
    assert parity["decoder_mask_max_abs"] < TOL and parity["decoder_iou_max_abs"] < TOL
    assert parity["mask_logit_range"] > 100 * TOL  # the comparison is not between near-zero outputs


def test_encoder_onnx_matches_torch(exported, segmenter):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    x, (nh, nw) = rt.preprocess(image)
    with torch.no_grad():
        ref = exported["sam"].image_encoder(torch.from_numpy(x)).numpy()
    emb = segmenter.embed(image)
    assert emb.shape == (1, 256, 64, 64)
    assert np.abs(emb - ref).max() < TOL
    assert (nh, nw) == (576, 1024)


PROMPT_SETS = [
    # (coords in the 1024 frame, labels): box only, box + point, box + point + negatives, points only
    ([[100, 120], [400, 380]], [2, 3]),
    ([[250, 250], [100, 120], [400, 380]], [1, 2, 3]),
    ([[250, 250], [90, 110], [420, 400], [100, 120], [400, 380]], [1, 0, 0, 2, 3]),
    ([[700, 500], [0, 0]], [1, -1]),  # SAM's own padding token for a point-only prompt
    ([[10.5, 1000.25], [1020, 3], [512, 512]], [1, 1, 0]),
]


@pytest.mark.parametrize("k", range(len(PROMPT_SETS)))
def test_decoder_matches_original_mobile_sam(exported, decoder, k):
    coords, labels = PROMPT_SETS[k]
    emb = embedding(k)
    masks, iou = run_decoder(decoder, emb, [coords], [labels])
    ref_m, ref_iou = ex.reference_decode(exported["sam"], emb, coords, labels)
    assert masks.shape == (1, 4, 256, 256) and iou.shape == (1, 4)
    assert np.abs(masks[0] - ref_m).max() < TOL
    assert np.abs(iou[0] - ref_iou).max() < TOL
    assert np.abs(ref_m).max() > 100 * TOL


def test_batched_decoding_equals_one_by_one(exported, decoder):
    emb = embedding(7)
    n_pts = max(len(lbl) for _, lbl in PROMPT_SETS)
    coords = np.zeros((len(PROMPT_SETS), n_pts, 2), np.float32)
    labels = np.full((len(PROMPT_SETS), n_pts), ex.PAD_LABEL, np.float32)
    for i, (c, lbl) in enumerate(PROMPT_SETS):
        coords[i, :len(c)] = c
        labels[i, :len(lbl)] = lbl
    coords[labels == ex.PAD_LABEL] = 333.0  # padded points' coordinates must not matter
    masks, iou = run_decoder(decoder, emb, coords, labels)
    for i, (c, lbl) in enumerate(PROMPT_SETS):
        one_m, one_iou = run_decoder(decoder, emb, [c], [lbl])
        assert np.abs(masks[i] - one_m[0]).max() < TOL
        assert np.abs(iou[i] - one_iou[0]).max() < TOL


def test_mask_windows_are_exact_crops(decoder):
    emb = embedding(11)
    coords = [[[250, 250], [100, 120], [400, 380]], [[600, 700], [500, 600], [900, 1000]]]
    labels = [[1, 2, 3], [1, 2, 3]]
    full, iou_full = run_decoder(decoder, emb, coords, labels)
    windows = np.array([[3, 7, 10, 12], [50, 52, 10, 12]], np.int64)
    part, iou_part = run_decoder(decoder, emb, coords, labels, windows)
    assert part.shape == (2, 4, 40, 48)
    for i, (ty, tx, th, tw) in enumerate(windows):
        np.testing.assert_array_equal(part[i], full[i, :, 4 * ty:4 * (ty + th), 4 * tx:4 * (tx + tw)])
    np.testing.assert_array_equal(iou_part, iou_full)


# --- geometry ----------------------------------------------------------------------------------

sizes = st.tuples(st.integers(8, 1500), st.integers(8, 1500))


@settings(max_examples=60, deadline=None)
@given(size=sizes, frac=st.tuples(*[st.floats(0, 1)] * 4))
def test_box_coordinates_map_like_sam(size, frac):
    h, w = size
    transform = import_mobile_sam().utils.transforms.ResizeLongestSide(1024)
    x0, x1 = sorted((frac[0] * (w - 1), frac[1] * (w - 1)))
    y0, y1 = sorted((frac[2] * (h - 1), frac[3] * (h - 1)))
    box = np.array([[x0, y0, x1, y1]])
    mine = rt.apply_coords(box.reshape(-1, 2, 2), (h, w)).reshape(-1, 4)
    np.testing.assert_allclose(mine, transform.apply_boxes(box, (h, w)), rtol=0, atol=1e-9)
    nh, nw = rt.preprocess_shape(h, w)
    assert max(nh, nw) == 1024 and (nh, nw) == transform.get_preprocess_shape(h, w, 1024)
    # the same relative position in the resized image
    np.testing.assert_allclose(mine[0, [0, 2]] / nw, box[0, [0, 2]] / w, atol=1e-12)
    np.testing.assert_allclose(mine[0, [1, 3]] / nh, box[0, [1, 3]] / h, atol=1e-12)


def test_prompt_points_layout():
    prompts = [Prompt(box=(10, 20, 30, 40), point=(25, 40)),
               Prompt(box=(100, 50, 1, 1), point=(100, 50), negative_points=[(90, 45), (120, 60)])]
    coords, labels = rt.prompt_points(prompts, (720, 1280))
    s = 1024 / 1280.0
    np.testing.assert_array_equal(labels, [[1, 2, 3, -2, -2], [1, 0, 0, 2, 3]])
    np.testing.assert_allclose(coords[0, :3], np.array([[25, 40], [10, 20], [39, 59]]) * s, rtol=1e-6)
    np.testing.assert_allclose(coords[1], np.array([[100, 50], [90, 45], [120, 60], [100, 50], [100, 50]]) * s,
                               rtol=1e-6)
    _, labels = rt.prompt_points(prompts, (720, 1280), use_point=False, use_negative_points=False)
    np.testing.assert_array_equal(labels, [[2, 3], [2, 3]])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.tuples(st.integers(16, 900), st.integers(16, 900)), seed=st.integers(0, 1000),
       box=st.tuples(*[st.floats(0, 1)] * 4), margin=st.sampled_from([0.0, 0.25, 1.0]))
def test_roi_upsampling_equals_sam_postprocess_cropped(exported, size, seed, box, margin):
    h, w = size
    nh, nw = rt.preprocess_shape(h, w)
    low = np.random.default_rng(seed).standard_normal((1, 1, 256, 256)).astype(np.float32)
    with torch.no_grad():
        ref = exported["sam"].postprocess_masks(torch.from_numpy(low), (nh, nw), (h, w))[0, 0].numpy()
    up = rt.MaskUpsampler()
    full = up.full_logits(low[0, 0], (h, w))
    assert full.shape == (h, w)
    # float32 rounding of two chained interpolations: relative to the logits' magnitude (standard normal, up to ~5)
    assert np.abs(full - ref).max() < TOL * max(1.0, float(np.abs(ref).max()))
    bx, by = int(box[0] * (w - 1)), int(box[1] * (h - 1))
    bw, bh = 1 + int(box[2] * (w - bx - 1)), 1 + int(box[3] * (h - by - 1))
    x, y, rw, rh = rt.roi_for_box((bx, by, bw, bh), (h, w), margin, 4)
    assert 0 <= x and 0 <= y and x + rw <= w and y + rh <= h
    assert x <= bx and y <= by and x + rw >= bx + bw and y + rh >= by + bh
    roi = up.roi_logits(low[0, 0], (h, w), (x, y, rw, rh))
    np.testing.assert_array_equal(roi, full[y:y + rh, x:x + rw])  # same taps, same arithmetic
    # through a token window, as the segmenter does
    win = rt.token_windows([up.lowres_span((h, w), (x, y, rw, rh))])[0]
    t0, t1 = 4 * win[0], 4 * win[1]
    crop = low[0, 0, t0:t0 + 4 * win[2], t1:t1 + 4 * win[3]]
    np.testing.assert_array_equal(up.roi_logits(crop, (h, w), (x, y, rw, rh), (t0, t1)), roi)


@settings(max_examples=100, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 255), st.integers(1, 256), st.integers(0, 255), st.integers(1, 256)),
                      min_size=1, max_size=8))
def test_token_windows_cover_spans_inside_the_grid(spans):
    spans = [(min(a, b - 1), b, min(c, d - 1), d) for a, b, c, d in spans]
    win = rt.token_windows(spans)
    assert len(set(map(tuple, win[:, 2:]))) == 1  # a common window size
    for (a0, a1, b0, b1), (ty, tx, th, tw) in zip(spans, win):
        assert 0 <= ty and ty + th <= 64 and 0 <= tx and tx + tw <= 64
        assert 4 * ty <= a0 and a1 <= 4 * (ty + th) and 4 * tx <= b0 and b1 <= 4 * (tx + tw)
    sizes = np.array([[(a1 + 3) // 4 - a0 // 4, (b1 + 3) // 4 - b0 // 4] for a0, a1, b0, b1 in spans])
    np.testing.assert_array_equal(win[0, 2:], sizes.max(axis=0))  # no bigger than needed


def test_preprocess_matches_sam(exported):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (150, 201, 3), dtype=np.uint8)  # BGR
    rgb = np.ascontiguousarray(image[..., ::-1])
    transform = import_mobile_sam().utils.transforms.ResizeLongestSide(1024)
    resized = transform.apply_image(rgb)  # SAM: PIL bilinear
    np.testing.assert_array_equal(rt.resize_longest(rgb, "pil"), resized)
    with torch.no_grad():
        ref = exported["sam"].preprocess(torch.from_numpy(resized).permute(2, 0, 1)[None].float()).numpy()
    x, (nh, nw) = rt.preprocess(image, "pil")
    assert (nh, nw) == resized.shape[:2] == (764, 1024)
    assert np.abs(x - ref).max() < 1e-5
    assert not x[:, :, nh:, :].any()
    # enlarging: OpenCV bilinear is PIL bilinear up to rounding
    assert np.abs(rt.resize_longest(rgb, "area").astype(int) - resized).max() <= 1


def test_resize_choice_on_real_frames(shared_data):
    """INTER_AREA is the OpenCV filter closest to SAM's antialiased PIL resize when shrinking."""
    import cv2

    frames = sorted((shared_data / "roadanomaly" / "frames").glob("*.jpg"))[:6]
    if not frames:
        pytest.skip("no RoadAnomaly frames")
    err = {"area": [], "linear": []}
    for f in frames:
        rgb = cv2.imread(str(f))[..., ::-1]
        ref = rt.resize_longest(rgb, "pil").astype(np.int16)
        for mode in err:
            err[mode].append(np.abs(rt.resize_longest(rgb, mode).astype(np.int16) - ref).mean())
    assert np.mean(err["area"]) < 0.75 * np.mean(err["linear"])
    assert np.mean(err["area"]) < 1.0


# --- the segmenter ------------------------------------------------------------------------------

def frame(seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 90, np.uint8)
    img[40:120, 60:160] = (30, 200, 40)
    img[100:170, 200:300] = (200, 40, 220)
    return np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


PROMPTS = [Prompt(box=(60, 40, 100, 80), point=(110, 80)),
           Prompt(box=(200, 100, 100, 70), point=(250, 135), negative_points=[(190, 95)]),
           Prompt(box=(0, 0, 320, 180), point=(160, 90)),
           Prompt(box=(300, 170, 20, 10), point=(310, 175))]


def test_segmenter_matches_reference_pipeline(exported, segmenter):
    image = frame(1)
    truncated_before = segmenter.counters["truncated_masks"]
    segs = segmenter.segment(image, np.zeros((H, W), np.float32), PROMPTS)
    emb = segmenter.embed(image)
    coords, labels = rt.prompt_points(PROMPTS, (H, W))
    nh, nw = rt.preprocess_shape(H, W)
    by_index = {s.prompt_index: s for s in segs}
    found = truncated = 0
    for i, p in enumerate(PROMPTS):
        low, iou = ex.reference_decode(exported["sam"], emb, coords[i], labels[i])
        k = 1 + int(np.argmax(iou[1:]))
        with torch.no_grad():
            full = exported["sam"].postprocess_masks(torch.from_numpy(low[None, k:k + 1]), (nh, nw), (H, W))
        full = full[0, 0].numpy()
        roi = rt.roi_for_box(p.box, (H, W), segmenter.roi_margin, segmenter.roi_min_margin_px)
        x, y, w, h = roi
        ref = full[y:y + h, x:x + w]
        if not (ref > 0).any():
            assert i not in by_index
            continue
        found += 1
        s = by_index[i]
        assert s.roi == roi and 0 <= x and 0 <= y and x + w <= W and y + h <= H
        assert s.mask.shape == (h, w) and s.mask.dtype == bool
        sure = np.abs(ref) > 1e-4  # pixels whose sign cannot flip by float rounding
        np.testing.assert_array_equal(s.mask[sure], ref[sure] > 0)
        assert abs(s.quality - iou[k]) < TOL
        m = s.mask
        truncated += bool((x > 0 and m[:, 0].any()) or (y > 0 and m[0].any())
                          or (x + w < W and m[:, -1].any()) or (y + h < H and m[-1].any()))
    assert found == len(segs) >= 3
    assert segmenter.counters["truncated_masks"] - truncated_before == truncated


def test_single_mask_mode_uses_output_zero(exported):
    seg = rt.MobileSamSegmenter(exported["enc"], exported["dec"], threads=1, multimask=False, roi_margin=0.0,
                                roi_min_margin_px=0)
    image = frame(2)
    emb = seg.embed(image)
    _, iou = seg.decode(emb, PROMPTS[:2], (H, W))
    np.testing.assert_array_equal(seg.select(iou), [0, 0])
    for s in seg.segment(image, None, PROMPTS[:2]):
        assert s.roi == PROMPTS[s.prompt_index].box
        assert abs(s.quality - iou[s.prompt_index, 0]) < 1e-6


class CountingSession:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.input_names, self.name = inner.input_names, inner.name

    def run(self, feeds, outputs=None):
        self.calls += 1
        return self.inner.run(feeds, outputs)


def test_zero_prompts_cost_nothing_and_embedding_is_cached(exported):
    seg = rt.MobileSamSegmenter(exported["enc"], exported["dec"], threads=1)
    seg.encoder, seg.decoder = CountingSession(seg.encoder), CountingSession(seg.decoder)
    image = frame(3)
    assert seg.segment(image, None, []) == []
    assert seg.encoder.calls == 0 and seg.decoder.calls == 0
    seg.segment(image, None, PROMPTS[:1])
    seg.segment(image.copy(), None, PROMPTS[1:3])  # same content, another array
    assert seg.encoder.calls == 1 and seg.decoder.calls == 2
    image[0, 0, 0] ^= 1  # one changed byte is a new frame
    seg.segment(image, None, PROMPTS[:1])
    assert seg.encoder.calls == 2
    seg.embed(image, frame_id=7)
    seg.embed(frame(4), frame_id=7)  # same frame id: trusted, not compared
    assert seg.encoder.calls == 3 and seg.counters["embedding_cache_hits"] == 2


def test_prompts_beyond_max_batch_are_decoded_in_chunks(exported, segmenter):
    image = frame(5)
    whole = segmenter.segment(image, None, PROMPTS)
    seg = rt.MobileSamSegmenter(exported["enc"], exported["dec"], threads=1, max_batch=3)
    seg.decoder = CountingSession(seg.decoder)
    chunked = seg.segment(image, None, PROMPTS)
    assert seg.decoder.calls == 2
    assert [s.prompt_index for s in chunked] == [s.prompt_index for s in whole]
    for a, b in zip(whole, chunked):
        assert a.roi == b.roi and abs(a.quality - b.quality) < TOL
        assert np.count_nonzero(a.mask != b.mask) <= 5  # only where a logit is within rounding of 0


def test_missing_model_files_say_how_to_export(exported, tmp_path):
    with pytest.raises(ModelFileError, match="s2m export mobilesam"):
        rt.MobileSamSegmenter(str(tmp_path / "enc.onnx"), exported["dec"])
    with pytest.raises(ModelFileError, match="dec.onnx"):
        rt.MobileSamSegmenter(exported["enc"], str(tmp_path / "dec.onnx"))
    with pytest.raises(ValueError, match="not a MobileSAM encoder"):
        rt.MobileSamSegmenter(exported["dec"], exported["dec"])
    with pytest.raises(ValueError, match="resize"):
        rt.MobileSamSegmenter(exported["enc"], exported["dec"], resize="nearest")
    with pytest.raises(ValueError, match="max_batch"):
        rt.MobileSamSegmenter(exported["enc"], exported["dec"], max_batch=0)


def test_roi_margin_grows_and_clips():
    assert rt.roi_for_box((100, 50, 40, 20), (720, 1280), 0.25, 8) == (90, 42, 60, 36)
    assert rt.roi_for_box((0, 0, 40, 20), (720, 1280), 0.5, 0) == (0, 0, 60, 30)
    assert rt.roi_for_box((1270, 710, 10, 10), (720, 1280), 0.0, 0) == (1270, 710, 10, 10)
    assert rt.roi_for_box((1270, 710, 10, 10), (720, 1280), 1.0, 0) == (1260, 700, 20, 20)
    assert math.isclose(rt.bilinear_matrix(7, 3).sum(axis=1).max(), 1.0)
