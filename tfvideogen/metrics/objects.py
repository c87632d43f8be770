"""Per-frame object statistics: are objects the right size, one per frame, at every frame?

Caption accuracy says whether a clip shows the right things; it does not see a
generator that draws its objects too large, smears them along their motion,
fades them in over the first frames or splits them into ghosts. On the
built-in datasets (bright objects on a black background) those failures are
measurable per frame without a model:

- area: pixels whose brightest channel is at least `threshold` (uint8);
- components: 8-connected groups of such pixels of at least `min_pixels`.

`compare(real, generated)` reports both per frame, averaged over clips, and
the generated/real area ratio per frame. A good generator reads a ratio near 1
at every frame and the real clips' component count (1 per object); blobs read
ratios above 1, fade-in reads ratios well below 1 on the first frames, ghosts
read more components than the real clips.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tfvideogen.utils import video as video_lib

# uint8 brightness (brightest channel) from which a pixel belongs to an object:
# the midpoint of the black background and a full-intensity color.
THRESHOLD = 128
# Smaller bright groups are speckle, not objects.
MIN_PIXELS = 4
_EIGHT_CONNECTED = np.ones((3, 3), bool)


def _check(videos: np.ndarray, name: str) -> np.ndarray:
    videos = video_lib.check_uint8_video(videos, name)
    if not len(videos):
        raise ValueError(f"{name} holds no videos")
    return videos


def frame_stats(videos: np.ndarray, threshold: int = THRESHOLD,
                min_pixels: int = MIN_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """uint8 videos [N, T, H, W, 3] (or one [T, H, W, 3]) -> (area, components),
    each float64 [N, T].

    area: object pixels per frame; components: 8-connected object groups of at
    least `min_pixels` pixels per frame.
    """
    videos = _check(videos, "videos")
    if not 0 < threshold <= 255:
        raise ValueError(f"threshold must be in (0, 255], got {threshold}")
    mask = videos.max(axis=-1) >= threshold  # [N, T, H, W]
    area = mask.sum(axis=(2, 3)).astype(np.float64)
    components = np.zeros(mask.shape[:2])
    for i, j in np.ndindex(*mask.shape[:2]):
        if not area[i, j]:
            continue
        labels, count = ndimage.label(mask[i, j], structure=_EIGHT_CONNECTED)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        components[i, j] = np.count_nonzero(sizes >= min_pixels)
    return area, components


def compare(real: np.ndarray, generated: np.ndarray, threshold: int = THRESHOLD,
            min_pixels: int = MIN_PIXELS) -> dict:
    """Per-frame object statistics of generated clips against real ones.

    `real`, `generated`: uint8 [N, T, H, W, 3] (N may differ, T must not).
    Returns {"real_area", "generated_area", "area_ratio" (per frame, generated
    / real mean area), "area_ratio_mean", "area_ratio_min", "area_ratio_max",
    "real_components", "generated_components" (per frame means),
    "components_mean" (generated, over all frames), "real_components_mean",
    "empty_frames" (fraction of generated frames with no object pixel),
    "threshold", "min_pixels"}.
    """
    real, generated = _check(real, "real"), _check(generated, "generated")
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"real clips {real.shape[1:]} and generated clips "
                         f"{generated.shape[1:]} differ in shape")
    real_area, real_comp = frame_stats(real, threshold, min_pixels)
    gen_area, gen_comp = frame_stats(generated, threshold, min_pixels)
    real_mean, gen_mean = real_area.mean(axis=0), gen_area.mean(axis=0)
    if not real_mean.all():
        raise ValueError(f"some real frames average no pixel >= {threshold}: this metric "
                         f"needs bright objects on a black background")
    ratio = gen_mean / real_mean
    return {
        "real_area": real_mean.tolist(),
        "generated_area": gen_mean.tolist(),
        "area_ratio": ratio.tolist(),
        "area_ratio_mean": float(gen_area.mean() / real_area.mean()),
        "area_ratio_min": float(ratio.min()),
        "area_ratio_max": float(ratio.max()),
        "real_components": real_comp.mean(axis=0).tolist(),
        "generated_components": gen_comp.mean(axis=0).tolist(),
        "real_components_mean": float(real_comp.mean()),
        "components_mean": float(gen_comp.mean()),
        "empty_frames": float(np.mean(gen_area == 0)),
        "threshold": threshold,
        "min_pixels": min_pixels,
    }
