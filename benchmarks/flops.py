"""FLOPs of a train step, counted from the layer shapes (not from a profiler).

    python benchmarks/flops.py --override data.height=64 --override data.width=64

Counts multiply-adds as 2 FLOPs for the layers that dominate the step:
Conv3D, Conv3DTranspose, Conv2D and Dense (the text encoder's GRU, norms,
activations and the optimizer are left out: < 1% for the video models).
Per layer, the forward cost is taken from the input/output shapes seen in one
recorded call:

- Conv (N-D): 2 * output elements * (kernel volume * input channels)
- ConvTranspose: 2 * input elements * (kernel volume * output channels)
- NearestUpConv3D: as the transposed conv it runs (4x4x4, or 3x4x4 without time
  upsampling), not as the 3x3x3 conv on the upsampled input it equals
- Dense: 2 * rows * input units * output units
- LayeredGenerator's resampling (two einsums, not layers): per frame, rows
  [S, S] @ layers [S, S*4] then columns likewise, 2 * 2 * S^3 * 4 (~67 MFLOP per
  16x64x64 clip), recorded as one "resample" entry

A train step (trainer.make_train_step) costs, for a global batch B:
G forward on B, D forward on 3B (real, fake, real with mismatched captions;
2B with `train.rescore_mismatch`, whose heads rescore the real clips' features, or
with `train.mismatch_weight=0`: `trainer.mismatch_pass`)
with D's backward (2x forward: input and weight gradients), D forward on B fakes in the G update
with an input-gradient backward only (1x: D's weights are not trained there),
and G's backward (2x).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class LayerCost:
    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    flops: int  # forward, for the recorded batch


def layer_flops(layer, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one call of `layer` (0 for layers that are not counted)."""
    import keras

    from tfvideogen.models.layers import NearestUpConv3D

    kind = type(layer)
    if issubclass(kind, keras.layers.Dense):
        rows = math.prod(input_shape[:-1])
        return 2 * rows * input_shape[-1] * layer.units
    if issubclass(kind, NearestUpConv3D):  # runs as a folded 4x4x4 (3x4x4) transposed conv
        return 2 * math.prod(input_shape) * math.prod(layer.folded_kernel_size) * layer.filters
    if issubclass(kind, (keras.layers.Conv3DTranspose, keras.layers.Conv2DTranspose)):
        return 2 * math.prod(input_shape) * math.prod(layer.kernel_size) * layer.filters
    if issubclass(kind, (keras.layers.Conv3D, keras.layers.Conv2D)):
        return 2 * math.prod(output_shape) * math.prod(layer.kernel_size) * input_shape[-1]
    return 0


def _countable(layer) -> bool:
    import keras

    return isinstance(layer, (keras.layers.Dense, keras.layers.Conv3D, keras.layers.Conv2D,
                              keras.layers.Conv3DTranspose, keras.layers.Conv2DTranspose))


def record(model, fn: Callable[[], object]) -> list[LayerCost]:
    """Runs `fn()` (eagerly) and returns the cost of every counted layer call of `model`."""
    costs: list[LayerCost] = []
    layers = [layer for layer in model._flatten_layers(include_self=False) if _countable(layer)]
    originals = {}
    for layer in layers:
        originals[id(layer)] = layer.call

        def spy(inputs, *args, _layer=layer, _call=layer.call, **kwargs):
            out = _call(inputs, *args, **kwargs)
            shape_in = tuple(int(d) for d in inputs.shape)
            shape_out = tuple(int(d) for d in out.shape)
            costs.append(LayerCost(_layer.name, type(_layer).__name__, shape_in, shape_out,
                                   layer_flops(_layer, shape_in, shape_out)))
            return out

        layer.call = spy
    try:
        fn()
    finally:
        for layer in layers:
            layer.call = originals[id(layer)]
    return costs


def resample_cost(g, batch: int = 1) -> LayerCost | None:
    """The layered generator's resampling einsums (None for other generators)."""
    from tfvideogen.models.layered import LayeredGenerator

    if not isinstance(g, LayeredGenerator):
        return None
    s = g.size
    # Per frame: rows [S, S] @ [S, S * 4] (RGB + alpha), then columns likewise.
    flops = batch * g.frames * 2 * (2 * s * s * s * 4)
    return LayerCost("resample", "einsum", (batch, s, s, 4), (batch, g.frames, s, s, 4), flops)


def model_costs(task, batch: int = 1) -> dict[str, list[LayerCost]]:
    """Forward costs of G on `batch` samples and of D on `batch` clips."""
    import tensorflow as tf

    g, d = task.generator, task.discriminator
    z = tf.zeros([batch, g.z_dim])
    text = tf.zeros([batch, g.text_dim])
    video = tf.zeros([batch, g.frames, g.size, g.size, 3])
    g_costs = record(g, lambda: g(z, text, training=False))
    extra = resample_cost(g, batch)
    return {"generator": g_costs + ([extra] if extra else []),
            "discriminator": record(d, lambda: d(video, text, training=False))}


def step_flops(task, batch_size: int, mismatch_pass: bool = True) -> dict[str, float]:
    """FLOPs of one D+G train step at global batch `batch_size` (see the module doc)."""
    costs = model_costs(task, batch=1)
    g = sum(c.flops for c in costs["generator"])
    d = sum(c.flops for c in costs["discriminator"])
    b = batch_size
    parts = {
        "g_forward": g * b,
        "g_backward": 2 * g * b,
        # Forward + input and weight gradients, on 3B (2B) clips.
        "d_step": 3 * d * (3 if mismatch_pass else 2) * b,
        "g_step_d": 2 * d * b,  # forward + input gradients only, on B fakes
    }
    return {"g_forward_per_video": float(g), "d_forward_per_video": float(d), **parts,
            "total": float(sum(parts.values()))}


def main(argv):
    from absl import flags

    from tfvideogen import config as config_lib
    from tfvideogen.training import trainer

    cfg = config_lib.resolve(flags.FLAGS.experiment, "", flags.FLAGS.override)
    task = trainer.build_task(cfg)
    for model, costs in model_costs(task).items():
        print(f"{model} (per video):")
        for c in costs:
            print(f"  {c.name:24s} {c.kind:16s} {str(c.input_shape):26s} -> "
                  f"{str(c.output_shape):26s} {c.flops / 1e6:10.1f} MFLOP")
    flops = step_flops(task, cfg.train.batch_size, trainer.mismatch_pass(cfg.train))
    print(f"step at batch {cfg.train.batch_size}: " + ", ".join(
        f"{k} {v / 1e9:.2f} GFLOP" for k, v in flops.items()))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("experiment", "default", "Named experiment.")
    flags.DEFINE_multi_string("override", [], "Config overrides.")
    app.run(main)
