"""Fréchet Video Distance, faithful to google-research `frechet_video_distance`.

The reference (Unterthiner et al. 2018) does, and so does this module:

1. videos uint8 RGB 0-255, [N, T, H, W, 3];
2. every frame resized to 224x224 with `tf.image.resize_bilinear` (TF1
   semantics: align_corners=False, half_pixel_centers=False; here
   `tf.compat.v1.image.resize_bilinear`, the same kernel);
3. scaled to [-1, 1] by 2 * x / 255 - 1;
4. embedded by I3D trained on Kinetics-400 from TF-Hub
   (https://tfhub.dev/deepmind/i3d-kinetics-400/1), batches of 16, keeping
   the 400-d logits (the reference's `RGB/inception_i3d/Mean:0` tensor, which
   is the module's `default` output);
5. the Fréchet distance between the two sets of logits in float64
   (`tfvideogen.metrics.frechet`, the TF-GAN formula).

The module is loaded with `tensorflow_hub.load` from a local directory or
from the TF-Hub cache (`TFHUB_CACHE_DIR`, else `<tmp>/tfhub_modules`). It is
never downloaded unless `allow_download=True`: offline, a missing module
fails at once with instructions instead of hanging on the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfvideogen.metrics import frechet

I3D_HANDLE = "https://tfhub.dev/deepmind/i3d-kinetics-400/1"
RESOLUTION = (224, 224)
BATCH_SIZE = 16
# The reference's default sample count (real and generated each).
DEFAULT_SAMPLES = 2048
SIGNATURE = "default"
OUTPUT_KEY = "default"


class ModuleNotAvailableError(FileNotFoundError):
    """The I3D module is neither a local directory nor in the TF-Hub cache."""


def preprocess(videos: np.ndarray | tf.Tensor,
               resolution: tuple[int, int] = RESOLUTION) -> tf.Tensor:
    """uint8 [N, T, H, W, 3] 0-255 -> float32 [N, T, 224, 224, 3] in [-1, 1] (reference)."""
    videos = tf.convert_to_tensor(videos)
    if videos.dtype != tf.uint8:
        raise ValueError(f"FVD expects uint8 RGB videos 0-255, got {videos.dtype.name}")
    if videos.shape.rank != 5 or videos.shape[-1] != 3:
        raise ValueError(f"FVD expects videos [N, T, H, W, 3], got shape {videos.shape}")
    n, t = tf.shape(videos)[0], tf.shape(videos)[1]
    frames = tf.reshape(videos, [-1, *videos.shape[2:]])
    resized = tf.compat.v1.image.resize_bilinear(frames, list(resolution), align_corners=False,
                                                 half_pixel_centers=False)
    resized = tf.reshape(resized, tf.stack([n, t, resolution[0], resolution[1], 3]))
    return 2.0 * tf.cast(resized, tf.float32) / 255.0 - 1.0


def cache_dir() -> str:
    """The TF-Hub cache directory `tensorflow_hub.load` uses (TFHUB_CACHE_DIR honoured)."""
    from tensorflow_hub import resolver

    return resolver.tfhub_cache_dir(use_temp=True)


def cached_module_dir(handle: str) -> str:
    """Where TF-Hub keeps (or would keep) the download of URL `handle`."""
    return os.path.join(cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())


def _is_saved_model(path: str) -> bool:
    return tf.io.gfile.isdir(path) and any(
        tf.io.gfile.exists(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt"))


def resolve_module(handle: str = I3D_HANDLE, allow_download: bool = False) -> str:
    """A local directory holding the module `handle` (a path or a TF-Hub URL).

    Raises ModuleNotAvailableError, saying how to provide the module, when it
    is not on disk and `allow_download` is False.
    """
    if not handle:
        raise ValueError("empty FVD module handle")
    if "://" not in handle or handle.startswith(("gs://", "file://")):
        path = handle[len("file://"):] if handle.startswith("file://") else handle
        if _is_saved_model(path):
            return path
        raise ModuleNotAvailableError(
            f"FVD module {handle!r} is not a directory holding a SavedModel / TF-Hub module "
            f"(no saved_model.pb)")
    cached = cached_module_dir(handle)
    if _is_saved_model(cached):
        return cached
    if allow_download:
        import tensorflow_hub as hub

        try:
            return hub.resolve(handle)
        except Exception as e:  # noqa: BLE001  (urllib/OSError/tf errors alike)
            raise ModuleNotAvailableError(
                f"could not download the FVD module {handle}: {e}") from None
    raise ModuleNotAvailableError(
        f"the I3D module for FVD is not available offline: {handle} is not in the TF-Hub "
        f"cache ({cached} is missing). Either set TFHUB_CACHE_DIR to a cache holding it "
        f"(on a machine with network: TFHUB_CACHE_DIR=DIR python -c \"import tensorflow_hub "
        f"as hub; hub.load('{handle}')\"), or pass the extracted module directory "
        f"(--fvd_module=/path/to/i3d-kinetics-400_1), or allow the download "
        f"(--fvd_download).")


def load_module(handle: str = I3D_HANDLE, allow_download: bool = False
                ) -> Callable[[tf.Tensor], tf.Tensor]:
    """The module's `default` signature as a function: float32 [B,T,224,224,3] -> [B, D]."""
    import tensorflow_hub as hub

    path = resolve_module(handle, allow_download)
    module = hub.load(path)
    signatures = getattr(module, "signatures", {})
    if SIGNATURE not in signatures:
        raise ValueError(f"FVD module {handle} has no {SIGNATURE!r} signature "
                         f"(has: {', '.join(signatures) or 'none'})")
    fn = signatures[SIGNATURE]
    inputs = list(fn.structured_input_signature[1])
    if len(inputs) != 1:
        raise ValueError(f"FVD module {handle}: the {SIGNATURE!r} signature must take one "
                         f"video tensor, takes {inputs}")
    input_name = inputs[0]

    def embed(videos: tf.Tensor) -> tf.Tensor:
        out = fn(**{input_name: videos})
        if OUTPUT_KEY in out:
            return out[OUTPUT_KEY]
        if len(out) == 1:
            return next(iter(out.values()))
        raise ValueError(f"FVD module {handle}: no {OUTPUT_KEY!r} output in {sorted(out)}")

    embed.module = module  # keep the loaded object (and its variables) alive
    return embed


class I3DEmbedder:
    """uint8 videos -> I3D logits, in batches; the reference pipeline end to end."""

    def __init__(self, handle: str = I3D_HANDLE, allow_download: bool = False,
                 batch_size: int = BATCH_SIZE, resolution: tuple[int, int] = RESOLUTION):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.handle, self.batch_size, self.resolution = handle, batch_size, tuple(resolution)
        self._embed = load_module(handle, allow_download)

    def __call__(self, videos: np.ndarray) -> np.ndarray:
        """uint8 [N, T, H, W, 3] -> float64 [N, D] logits."""
        videos = np.asarray(videos)
        if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"FVD expects uint8 videos [N, T, H, W, 3], got {videos.dtype} "
                             f"{videos.shape}")
        out = []
        for i in range(0, len(videos), self.batch_size):
            batch = preprocess(videos[i:i + self.batch_size], self.resolution)
            try:
                logits = self._embed(batch)
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                raise ValueError(
                    f"the FVD module failed on a batch of shape {tuple(batch.shape)} "
                    f"(a clip may be too short for I3D): {str(e).splitlines()[0][:300]}"
                ) from None
            logits = np.asarray(logits, np.float64)
            if logits.ndim != 2 or logits.shape[0] != batch.shape[0]:
                raise ValueError(f"the FVD module returned shape {logits.shape} for a batch of "
                                 f"{batch.shape[0]}; expected [batch, dim]")
            out.append(logits)
        return np.concatenate(out)


@dataclasses.dataclass
class FVDResult:
    """An FVD value and the protocol it was measured under (never report one alone)."""

    value: float
    protocol: dict

    def to_dict(self) -> dict:
        return {"value": self.value, "protocol": dict(self.protocol)}


def protocol(real: np.ndarray, generated: np.ndarray, embedder: I3DEmbedder, **extra) -> dict:
    """The settings that make an FVD number comparable (written next to every score)."""
    return {
        "metric": "FVD (Frechet Video Distance)",
        "reference": "google-research/frechet_video_distance",
        "module": embedder.handle,
        "features": "I3D Kinetics-400 logits (the module's 'default' output)",
        "feature_dim": None,
        "samples_real": int(len(real)),
        "samples_generated": int(len(generated)),
        "frames": int(real.shape[1]),
        "source_resolution": [int(real.shape[2]), int(real.shape[3])],
        "resize": (f"bilinear to {embedder.resolution[0]}x{embedder.resolution[1]} per frame "
                   "(tf.compat.v1.image.resize_bilinear, align_corners=False, "
                   "half_pixel_centers=False)"),
        "scale": "2 * x / 255 - 1 (uint8 0-255 -> [-1, 1])",
        "batch_size": embedder.batch_size,
        "frechet": "float64, unbiased covariances, real part of scipy.linalg.sqrtm",
        **extra,
    }


def fvd(real: np.ndarray, generated: np.ndarray, embedder: I3DEmbedder | None = None,
        **protocol_extra) -> FVDResult:
    """FVD between uint8 video sets real [N,T,H,W,3] and generated [M,T,H,W,3].

    `protocol_extra` (e.g. split="train", seed=...) is recorded in the protocol.
    """
    real, generated = np.asarray(real), np.asarray(generated)
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"real and generated videos differ in shape: {real.shape[1:]} vs "
                         f"{generated.shape[1:]}")
    embedder = embedder or I3DEmbedder()
    f_real, f_gen = embedder(real), embedder(generated)
    value = frechet.frechet_distance(f_real, f_gen)
    proto = protocol(real, generated, embedder, **protocol_extra)
    proto["feature_dim"] = int(f_real.shape[1])
    return FVDResult(value=value, protocol=proto)
