"""Frame preprocessing: from decoded RGB frames to the backbone's input, as each published
extractor does it.

Two halves:

* :func:`host_transform` (in the decoding thread, on uint8 frames): the steps the published
  extractors do with image libraries, reproduced with the same libraries so that pixels match —
  a JPEG round trip (UR-DMU writes every frame with ``cv2.imwrite`` and reads it back with PIL),
  and a resize by PIL (``Image.LANCZOS``: Gowtham's and UR-DMU's 340x256) or OpenCV
  (``cv2.INTER_LINEAR``: VadCLIP's ``cv2.resize``).
* :func:`preprocess` (batched torch ops on the model's device): a torch resize when the recipe
  asks for one, scaling to ``(x / 255 - mean) / std``, then the crop *views* — or the cells of a
  patch grid — giving ``(N, views, 3, T, S, S)``.

Views have names, the same in every store: ``tl``, ``tr``, ``bl``, ``br`` (the corners) and
``center`` (at ``((H - S) // 2, (W - S) // 2)``, e.g. 16:240, 58:282 of 256x340) are regions of the
resized frame; ``flip_X`` is the mirror image of region X. So torchvision's / Gowtham's "crop the
flipped frame" order (tl, tr, c, bl, br of the flipped frame) is ``flip_tr, flip_tl, flip_center,
flip_br, flip_bl`` here, and VadCLIP's ``__5`` is ``flip_center``.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from wsvad_core.recipes import resolve_views

__all__ = ["resize_frames", "normalize", "views",
           "host_transform", "preprocess"]

# the interpolations a recipe may name: torch ops on the device, or the image library an extractor used
TORCH_INTERPOLATION = {"bilinear": "bilinear", "bicubic": "bicubic"}
HOST_INTERPOLATION = ("pil_lanczos", "pil_bilinear", "pil_bicubic", "cv2_linear", "cv2_area")


def target_size(h: int, w: int, resize) -> tuple[int, int]:
    """(H, W) after the recipe's ``resize``: an int is the short side (aspect kept, rounded),
    ``[W, H]`` a fixed size (aspect not kept, as ``cv2.resize(f, (340, 256))``)."""
    if isinstance(resize, (list, tuple)):
        return int(resize[1]), int(resize[0])
    size = int(resize)
    if h <= w:
        return size, max(1, round(w * size / h))
    return max(1, round(h * size / w)), size


def resize_frames(x: torch.Tensor, resize, mode: str = "bilinear", antialias: bool = True) -> torch.Tensor:
    """Torch resize of ``(..., C, H, W)`` to :func:`target_size`."""
    h, w = x.shape[-2:]
    new = target_size(h, w, resize)
    if new == (h, w):
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    out = F.interpolate(flat if flat.is_floating_point() else flat.float(), size=new,
                        mode=TORCH_INTERPOLATION[mode], align_corners=False, antialias=antialias)
    return out.reshape(*lead, *out.shape[-3:])


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], dim: int = -3) -> torch.Tensor:
    """``(x - mean) / std`` per channel along ``dim``; x in [0, 1]."""
    shape = [1] * x.ndim
    shape[dim] = -1
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(shape)
    if m.numel() != x.shape[dim] or s.numel() != x.shape[dim]:
        raise ValueError(f"mean/std have {m.numel()}/{s.numel()} values for {x.shape[dim]} channels")
    return (x - m) / s


def _boxes(h: int, w: int, size: int) -> dict[str, tuple[int, int]]:
    if size > h or size > w:
        raise ValueError(f"crop size {size} is larger than the frame {h}x{w}; "
                         f"raise the recipe's resize to at least {size}")
    return {"tl": (0, 0), "tr": (0, w - size), "bl": (h - size, 0), "br": (h - size, w - size),
            "center": ((h - size) // 2, (w - size) // 2)}


def views(x: torch.Tensor, size: int, names: Sequence[str]) -> torch.Tensor:
    """``(..., C, H, W)`` -> ``(..., len(names), C, size, size)``: the named views, in order."""
    boxes = _boxes(x.shape[-2], x.shape[-1], size)
    out = []
    for name in names:
        region = name.removeprefix("flip_")
        top, left = boxes[region]
        crop = x[..., top:top + size, left:left + size]
        out.append(crop.flip(-1) if name.startswith("flip_") else crop)
    return torch.stack(out, dim=-4)


# ---------------------------------------------------------------- on the host, uint8 frames

def _pil_resample(name: str):
    from PIL import Image

    return {"pil_lanczos": Image.LANCZOS, "pil_bilinear": Image.BILINEAR, "pil_bicubic": Image.BICUBIC}[name]


def host_transform(recipe: Mapping):
    """The recipe's image-library steps as a function of uint8 RGB frames ``(N, H, W, 3)``, or
    None when it has none (everything then happens in :func:`preprocess`):

    * ``jpeg: {encoder: opencv, quality: Q}`` — every frame written as JPEG by OpenCV (BGR, as
      ``cv2.imwrite``), read back by PIL (UR-DMU's ``video2frame_split.py`` then ``i3d_extract.py``);
    * ``interpolation`` ``pil_*`` / ``cv2_*`` — the resize by that library, on uint8, rounded as
      it rounds (PIL on an ``Image``; OpenCV ``cv2.resize`` with ``dsize`` = (W, H))."""
    jpeg = recipe.get("jpeg")
    interp = recipe.get("interpolation", "bilinear")
    resize = recipe.get("resize")
    if not jpeg and interp not in HOST_INTERPOLATION:
        return None

    def run(frames: np.ndarray) -> np.ndarray:
        import cv2
        from PIL import Image

        out = []
        for f in frames:
            if jpeg:
                ok, buf = cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(jpeg["quality"])])
                if not ok:
                    raise RuntimeError("OpenCV could not encode a frame as JPEG")
                img = Image.open(io.BytesIO(buf.tobytes()))
                img.load()
                f = np.asarray(img.convert("RGB"))
            if interp in HOST_INTERPOLATION:
                h, w = target_size(f.shape[0], f.shape[1], resize)
                if (h, w) != f.shape[:2]:
                    if interp.startswith("pil_"):
                        f = np.asarray(Image.fromarray(f).resize((w, h), _pil_resample(interp)))
                    else:
                        flag = {"cv2_linear": cv2.INTER_LINEAR, "cv2_area": cv2.INTER_AREA}[interp]
                        f = cv2.resize(np.ascontiguousarray(f), (w, h), interpolation=flag)
            out.append(f)
        return np.stack(out)

    return run


# ---------------------------------------------------------------- on the device, batched

def preprocess(frames: torch.Tensor, recipe: Mapping) -> torch.Tensor:
    """Snippets ``(N, T, H, W, 3)`` uint8 (after :func:`host_transform`) -> ``(N, views, 3, T, S,
    S)`` float32, normalised. With ``patch_grid`` the "views" are the grid's cells of the whole
    resized frame instead, raster order, each resized to ``crop_size`` (``features/patches.py``)."""
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected snippets (N, T, H, W, 3), got shape {tuple(frames.shape)}")
    x = frames.permute(0, 1, 4, 2, 3).float()           # (N, T, 3, H, W)
    interp = recipe.get("interpolation", "bilinear")
    if interp in TORCH_INTERPOLATION:
        x = resize_frames(x, recipe["resize"], interp)
    # normalise before cropping: ten crops hold ~5x more pixels than the resized frame
    x = normalize(x / 255.0, recipe["mean"], recipe["std"])
    if recipe.get("patch_grid") is not None:
        from wsvad_core.features.patches import grid_patches

        x = grid_patches(x, recipe["patch_grid"], recipe["crop_size"])   # (N, T, P, 3, S, S)
    else:
        x = views(x, recipe["crop_size"], resolve_views(recipe["crops"]))  # (N, T, V, 3, S, S)
    return x.permute(0, 2, 3, 1, 4, 5).contiguous()      # (N, V, 3, T, S, S)
