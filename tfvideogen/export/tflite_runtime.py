"""Run a converted model: caption -> video, with the `.tflite` and its text sidecar.

    from tfvideogen.export.tflite_runtime import TFLiteTextToVideo

    model = TFLiteTextToVideo.load("tflite/1", variant="float16")
    model.write_video("a red square is moving up and down", "red.gif", seed=3)
    videos = model.generate(["a blue circle is moving left and right"], seed=[7])

Inference runs on `ai_edge_litert` (inputs fed by name through the
`generate_from_embedding` signature runner); importing `tfvideogen.export`
still loads TensorFlow (its `__init__` imports the SavedModel exporter), so
this is a desktop/test API: device apps use the files. Seeds map to latents with
`tfvideogen.models.latents_from_seeds` (TensorFlow, imported on first use), the
mapping the SavedModel serves (with the export's truncation, from the report),
so a (caption, seed) pair gives the served video up to the variant's error;
apps without TensorFlow pass `z` instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from tfvideogen.export import text_sidecar, tflite
from tfvideogen.models.task import check_truncation


class TFLiteTextToVideo:
    """A converted generator + text sidecar.

    `generate(captions, seed)` -> uint8 [B, T, H, W, 3] (0-255); `embed(captions)`
    -> float32 [B, text_dim]; `write_video(caption, path)` -> .gif/.mp4 file.
    """

    def __init__(self, model_path: str, sidecar_dir: str, num_threads: int | None = None,
                 truncation: float = 1.0):
        check_truncation(truncation)
        self.truncation = truncation
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"no TFLite model at {model_path}")
        self.model_path = model_path
        self.text = text_sidecar.TextSidecar(sidecar_dir, num_threads=num_threads)
        self._runner = tflite.generator_runner(model_path, num_threads)
        inputs = self._runner.get_input_details()
        self.z_dim = int(inputs["z"]["shape_signature"][-1])
        self.text_dim = int(inputs["text_embedding"]["shape_signature"][-1])
        if self.text_dim != self.text.text_dim:
            raise ValueError(f"{model_path} takes {self.text_dim}-d text embeddings but the "
                             f"sidecar {sidecar_dir} gives {self.text.text_dim}-d ones")
        out = self._runner.get_output_details()["video"]
        self.video_shape = tuple(int(d) for d in out["shape_signature"][1:])

    @classmethod
    def load(cls, out_dir: str, variant: str = "float32",
             num_threads: int | None = None) -> TFLiteTextToVideo:
        """The `variant` written by `tfvideogen.export.tflite.convert` into `out_dir`."""
        report = tflite.load_report(out_dir)
        entry = report["variants"].get(variant)
        if entry is None:
            raise ValueError(f"variant {variant!r} was not converted in {out_dir}; converted: "
                             f"{', '.join(report['variants'])}")
        if not entry.get("file"):
            raise ValueError(f"variant {variant!r} failed to convert: {entry.get('reason')}")
        return cls(os.path.join(out_dir, entry["file"]),
                   os.path.join(out_dir, report["sidecar"]["dir"]), num_threads,
                   float(report.get("truncation", 1.0)))

    def embed(self, captions: str | Sequence[str]) -> np.ndarray:
        return self.text.embed(captions)

    def generate(self, captions: str | Sequence[str], seed: int | Sequence[int] = 0, *,
                 z: np.ndarray | None = None) -> np.ndarray:
        """Captions -> uint8 videos [B, T, H, W, 3].

        `seed`: an int (caption i uses seed + i) or one seed per caption, as in
        `TextToVideo.generate` (latents scaled by the export's truncation); `z`
        float32 [B, z_dim] overrides the seeds and is used as given.
        """
        captions = [captions] if isinstance(captions, str | bytes) else list(captions)
        if not captions:
            raise ValueError("no captions given")
        if z is None:
            seeds = (np.arange(len(captions)) + int(seed) if np.ndim(seed) == 0
                     else np.asarray(seed, np.int64))
            if seeds.shape != (len(captions),):
                raise ValueError(f"got {seeds.size} seeds for {len(captions)} captions")
            from tfvideogen.models import latents_from_seeds

            z = latents_from_seeds(seeds.astype(np.int64), self.z_dim, self.truncation).numpy()
        z = np.asarray(z, np.float32)
        if z.shape != (len(captions), self.z_dim):
            raise ValueError(f"z must be [{len(captions)}, {self.z_dim}], got {z.shape}")
        embeddings = self.embed(captions)
        return self._runner(z=z, text_embedding=embeddings)["video"]

    def write_video(self, caption: str, path: str, seed: int = 0, *, fps: int = 8,
                    scale: int = 1) -> str:
        """Generates one video and writes it to `path` (.gif or .mp4, atomically).
        `scale` enlarges small clips (nearest neighbour) for viewing."""
        from tfvideogen.utils import video as video_lib

        clip = self.generate([caption], seed=[seed])[0]
        return video_lib.write_video(path, video_lib.upscale(clip, scale), fps=fps)
