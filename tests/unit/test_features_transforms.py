"""Preprocessing geometry: resize, centre crop, the 10-crop order, normalisation, layout."""
from __future__ import annotations

import pytest
import torch

from wsvad_core.features.transforms import center_crop, five_crop, normalize, preprocess, resize_short_side, ten_crop


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
    # crops 5-9: same positions on the mirrored frame = mirrored tr, tl, (shifted) centre, br, bl
    assert torch.equal(crops[5], region["tr"].flip(-1))
    assert torch.equal(crops[6], region["tl"].flip(-1))
    assert torch.equal(crops[7], img[..., ct:ct + s, w - cl - s:w - cl].flip(-1))
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


def test_five_and_center_crop_batched():
    x = ramp(8, 10).expand(2, 5, 3, 8, 10)  # (N, T, C, H, W)
    c = center_crop(x, 4)
    assert c.shape == (2, 5, 3, 4, 4)
    assert torch.equal(c[1, 4], x[1, 4, :, 2:6, 3:7])
    assert five_crop(x, 4).shape == (2, 5, 5, 3, 4, 4)
    with pytest.raises(ValueError, match="larger than the frame"):
        center_crop(x, 9)


@pytest.mark.parametrize("hw,size,out", [((30, 40), 15, (15, 20)), ((40, 30), 15, (20, 15)),
                                         ((240, 320), 256, (256, 341)), ((16, 16), 16, (16, 16))])
def test_resize_short_side(hw, size, out):
    x = torch.rand(2, 3, *hw)
    y = resize_short_side(x, size)
    assert y.shape == (2, 3, *out)
    # a flat image stays flat
    flat = torch.full((1, 3, *hw), 0.7)
    assert torch.allclose(resize_short_side(flat, size), torch.full((1, 3, *out), 0.7), atol=1e-5)


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
    out = preprocess(frames, resize=20, crop_size=16, crops=crops, mean=mean, std=std)
    assert out.shape == (n, n_crops, 3, t, 16, 16) and out.dtype == torch.float32
    expect = (val.float() / 255 - torch.tensor(mean)) / torch.tensor(std)      # (n, t, 3)
    got = out.mean(dim=(-1, -2))                                               # (n, crops, 3, t)
    assert torch.allclose(got, expect.permute(0, 2, 1)[:, None].expand_as(got), atol=1e-4)


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        preprocess(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 8, 8, "center", [0] * 3, [1] * 3)
    with pytest.raises(ValueError, match="crops"):
        preprocess(torch.zeros(1, 1, 8, 8, 3, dtype=torch.uint8), 8, 8, "five", [0] * 3, [1] * 3)
