"""Video helpers: grids, GIF/MP4 files, TensorBoard animated summaries."""

from __future__ import annotations

import io
import os

import numpy as np


def check_uint8_video(videos: np.ndarray, name: str = "videos") -> np.ndarray:
    """Validates uint8 [B, T, H, W, 3] (or [T, H, W, 3] -> batch of 1)."""
    videos = np.asarray(videos)
    if videos.ndim == 4:
        videos = videos[None]
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"{name} must be [B,T,H,W,3] (or [T,H,W,3]), got shape {videos.shape}")
    if videos.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {videos.dtype}")
    return videos


def grid(videos: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 [B, T, H, W, 3] -> one uint8 clip [T, rows*(H+pad)-pad, cols*(W+pad)-pad, 3]."""
    videos = check_uint8_video(videos)
    b, t, h, w, c = videos.shape
    cols = columns or int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    out = np.full((t, rows * (h + pad) - pad, cols * (w + pad) - pad, c), 64, np.uint8)
    for i in range(b):
        r, q = divmod(i, cols)
        out[:, r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = videos[i]
    return out


def upscale(clip: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of [T, H, W, 3] for viewing small clips."""
    return clip if factor <= 1 else clip.repeat(factor, axis=1).repeat(factor, axis=2)


def gif_bytes(clip: np.ndarray, fps: int = 8) -> bytes:
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, np.asarray(clip), extension=".gif", duration=1000 / fps, loop=0)
    return buf.getvalue()


def write_video(path: str, clip: np.ndarray, fps: int = 8) -> str:
    """Writes [T, H, W, 3] uint8 to .gif or .mp4 (atomically: temp file, rename)."""
    import imageio.v3 as iio
    import tensorflow as tf

    clip = check_uint8_video(clip, "clip")[0]
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        data = gif_bytes(clip, fps)
    elif ext == ".mp4":
        # H.264 wants even sizes; yuv420p for players; quality high for small clips.
        h, w = clip.shape[1:3]
        clip = np.pad(clip, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        buf = io.BytesIO()
        iio.imwrite(buf, clip, extension=".mp4", fps=fps, codec="libx264", quality=9,
                    macro_block_size=1)
        data = buf.getvalue()
    else:
        raise ValueError(f"unsupported video extension {ext!r} (use .gif or .mp4): {path}")
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path

