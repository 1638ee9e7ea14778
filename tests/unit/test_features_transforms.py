"""Preprocessing geometry: resize, named crop views and the presets' order, normalisation, the
host (image-library) steps, layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wsvad_core.features.transforms import host_transform, normalize, preprocess, resize_frames, target_size, views
from wsvad_core.recipes import VIEW_PRESETS, resolve_views


def ten_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    return views(x, size, resolve_views("ten"))


def ramp(h: int, w: int) -> torch.Tensor:
    """(1, H, W) image whose every pixel is distinct: value = 100*row + col."""
    return (torch.arange(h)[:, None] * 100 + torch.arange(w)[None, :]).float()[None]


def test_ten_crop_positions_and_flips():
    h, w, s = 7, 9, 4
    img = ramp(h, w)
    crops = ten_crop(img, s)
    assert crops.shape == (10, 1, s, s)
    ct, cl = (h - s) // 2, (w - s) // 2          # 1, 2
    region = {"tl": img[..., :s, :s], "tr": img[..., :s, w - s:], "c": img[..., ct:ct + s, cl:cl + s],
              "bl": img[..., h - s:, :s], "br": img[..., h - s:, w - s:]}
    for i, k in enumerate(["tl", "tr", "c", "bl", "br"]):
        assert torch.equal(crops[i], region[k]), k
    # crops 5-9: the mirror images of tr, tl, centre, br, bl (views flip_tr, flip_tl, flip_center, ...)
    assert torch.equal(crops[5], region["tr"].flip(-1))
    assert torch.equal(crops[6], region["tl"].flip(-1))
    # flip_center mirrors the centre region itself, also where W - S is odd (here 5)
    assert torch.equal(crops[7], region["c"].flip(-1))
    assert torch.equal(crops[8], region["br"].flip(-1))
    assert torch.equal(crops[9], region["bl"].flip(-1))


def test_ten_crop_on_distinct_corners():
    # a 256x340 frame (the I3D extractors' size) with a distinct value in each corner region
    img = torch.zeros(3, 256, 340)
    img[:, :100, :100] = 1     # top-left
    img[:, :100, -100:] = 2    # top-right
    img[:, -100:, :100] = 3    # bottom-left
    img[:, -100:, -100:] = 4   # bottom-right
    img[:, 120:136, 162:178] = 5  # centre
    img[0, :100, :10] = 9      # a marker on the far left edge of the top-left corner
    crops = ten_crop(img, 224)[:, 0]   # channel 0
    # each crop's outer corner pixel: crops 0-4 see the frame, 5-9 its mirror image
    assert [crops[0, 0, 0], crops[1, 0, -1], crops[3, -1, 0], crops[4, -1, -1]] == [9, 2, 3, 4]
    assert [crops[5, 0, 0], crops[6, 0, -1], crops[8, -1, 0], crops[9, -1, -1]] == [2, 9, 4, 3]
    assert crops[2, 112, 112] == 5 and crops[7, 112, 112] == 5
    # the marker sits left in crop 0, right in its mirror (crop 6)
    assert crops[0, 0, :10].eq(9).all() and crops[6, 0, -10:].eq(9).all()
    # the centre crop is the 16:240, 58:282 window
    assert torch.equal(crops[2], img[0, 16:240, 58:282])


def test_views_batched_and_in_the_order_named():
    x = ramp(8, 10).expand(2, 5, 3, 8, 10)  # (N, T, C, H, W)
    c = views(x, 4, ["center"])
    assert c.shape == (2, 5, 1, 3, 4, 4)
    assert torch.equal(c[1, 4, 0], x[1, 4, :, 2:6, 3:7])
    # XD-Violence's five crops: the centre first, then the corners
    five = views(x, 4, ["center", "tl", "tr", "bl", "br"])
    assert five.shape == (2, 5, 5, 3, 4, 4)
    assert torch.equal(five[0, 0, 0], c[0, 0, 0])
    assert torch.equal(five[0, 0, 1], x[0, 0, :, :4, :4]) and torch.equal(five[0, 0, 4], x[0, 0, :, 4:, 6:])
    # VadCLIP's ten views: the five regions, then their mirror images in the same order
    vadclip = ["center", "tl", "tr", "bl", "br", "flip_center", "flip_tl", "flip_tr", "flip_bl", "flip_br"]
    v = views(x, 4, vadclip)
    assert torch.equal(v[..., 5:, :, :, :], v[..., :5, :, :, :].flip(-1))
    with pytest.raises(ValueError, match="larger than the frame"):
        views(x, 9, ["center"])


def test_view_presets_and_names():
    assert resolve_views("center") == ["center"]
    assert resolve_views("ten") == list(VIEW_PRESETS["ten"]) == [
        "tl", "tr", "center", "bl", "br", "flip_tr", "flip_tl", "flip_center", "flip_br", "flip_bl"]
    assert resolve_views(["br", "flip_tl"]) == ["br", "flip_tl"]
    with pytest.raises(ValueError, match="crops must be one of"):
        resolve_views("five")
    with pytest.raises(ValueError, match=r"\['middle'\] unknown"):
        resolve_views(["tl", "middle"])
    with pytest.raises(ValueError, match="distinct"):
        resolve_views(["tl", "tl"])


@pytest.mark.parametrize("hw,size,out", [((30, 40), 15, (15, 20)), ((40, 30), 15, (20, 15)),
                                         ((240, 320), 256, (256, 341)), ((16, 16), 16, (16, 16)),
                                         ((240, 320), [340, 256], (256, 340)), ((40, 30), [10, 20], (20, 10))])
def test_resize_frames(hw, size, out):
    # an int is the short side (aspect kept), [W, H] a fixed size (aspect not kept)
    assert target_size(*hw, size) == out
    x = torch.rand(2, 3, *hw)
    y = resize_frames(x, size)
    assert y.shape == (2, 3, *out)
    # a flat image stays flat
    flat = torch.full((1, 3, *hw), 0.7)
    assert torch.allclose(resize_frames(flat, size), torch.full((1, 3, *out), 0.7), atol=1e-5)


def test_normalize_per_channel():
    x = torch.ones(2, 3, 4, 4) * torch.tensor([0.2, 0.5, 0.8])[:, None, None]
    y = normalize(x, [0.2, 0.4, 0.6], [0.1, 0.2, 0.4])
    assert torch.allclose(y[:, 0], torch.zeros(1)) and torch.allclose(y[:, 1], torch.full((1,), 0.5))
    assert torch.allclose(y[:, 2], torch.full((1,), 0.5))
    # channel on another axis
    z = normalize(x.permute(0, 2, 3, 1), [0.2, 0.4, 0.6], [0.1, 0.2, 0.4], dim=-1)
    assert torch.allclose(z.permute(0, 3, 1, 2), y)
    with pytest.raises(ValueError):
        normalize(x, [0.5, 0.5], [1, 1])


@pytest.mark.parametrize("crops,n_crops", [("center", 1), ("ten", 10)])
def test_preprocess_layout_and_values(crops, n_crops):
    n, t, h, w = 2, 4, 30, 40
    # pixel value encodes (snippet, frame, channel): 10*n + 3*t + c
    val = (10 * torch.arange(n)[:, None, None] + 3 * torch.arange(t)[None, :, None] + torch.arange(3))
    frames = val[:, :, None, None, :].expand(n, t, h, w, 3).to(torch.uint8).contiguous()
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.125]
    recipe = {"resize": 20, "crop_size": 16, "crops": crops, "mean": mean, "std": std, "interpolation": "bilinear"}
    out = preprocess(frames, recipe)
    assert out.shape == (n, n_crops, 3, t, 16, 16) and out.dtype == torch.float32
    expect = (val.float() / 255 - torch.tensor(mean)) / torch.tensor(std)      # (n, t, 3)
    got = out.mean(dim=(-1, -2))                                               # (n, crops, 3, t)
    assert torch.allclose(got, expect.permute(0, 2, 1)[:, None].expand_as(got), atol=1e-4)


def test_preprocess_rejects_bad_input():
    recipe = {"resize": 8, "crop_size": 8, "crops": "center", "mean": [0] * 3, "std": [1] * 3}
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        preprocess(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), recipe)
    with pytest.raises(ValueError, match="crops"):
        preprocess(torch.zeros(1, 1, 8, 8, 3, dtype=torch.uint8), {**recipe, "crops": "five"})


def test_host_interpolation_resizes_on_the_host_with_that_library():
    """pil_* / cv2_* resize uint8 frames with PIL / OpenCV (as the published extractors do), and
    preprocess then leaves the size alone; torch interpolations have no host step."""
    import cv2
    from PIL import Image

    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    assert host_transform({"interpolation": "bilinear", "resize": 16}) is None
    cv = host_transform({"interpolation": "cv2_linear", "resize": [20, 16]})(frames)
    assert cv.dtype == np.uint8 and cv.shape == (2, 16, 20, 3)
    assert np.array_equal(cv[1], cv2.resize(frames[1], (20, 16), interpolation=cv2.INTER_LINEAR))
    pil = host_transform({"interpolation": "pil_lanczos", "resize": 16})(frames)   # short side 16
    assert pil.shape == (2, 16, 21, 3)
    assert np.array_equal(pil[0], np.asarray(Image.fromarray(frames[0]).resize((21, 16), Image.LANCZOS)))
    # preprocess does not resize host-resized frames again
    recipe = {"interpolation": "pil_lanczos", "resize": 16, "crop_size": 16, "crops": "center",
              "mean": [0] * 3, "std": [1] * 3}
    out = preprocess(torch.from_numpy(pil[None]), recipe)          # (1, 1, 3, 2, 16, 16)
    assert torch.allclose(out[0, 0, :, 0], torch.from_numpy(pil[0, :, 2:18]).permute(2, 0, 1).float() / 255)


def test_host_jpeg_round_trip_changes_pixels_like_opencv_and_pil():
    import io

    import cv2
    from PIL import Image

    frames = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    out = host_transform({"jpeg": {"encoder": "opencv", "quality": 50}, "interpolation": "bilinear"})(frames)
    ok, buf = cv2.imencode(".jpg", frames[0][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
    want = np.asarray(Image.open(io.BytesIO(buf.tobytes())).convert("RGB"))
    assert ok and np.array_equal(out[0], want) and not np.array_equal(out[0], frames[0])
