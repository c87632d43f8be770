"""Train-step benchmark: steps/s, videos/s, ms/video and peak RSS per config.

    python benchmarks/train_step.py                       # default + 16x64x64 b16
    python benchmarks/train_step.py --override model.generator.upsampling=nearest

Prints a table and writes JSON (--out). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_multi_string("override", [], "Overrides applied to every case.")
flags.DEFINE_integer("steps", 20, "Timed steps per case (after warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed steps per case (tracing, allocator).")
flags.DEFINE_string("cases", "default,64x64_b16", "Comma-separated cases (see CASES).")
flags.DEFINE_string("out", "benchmarks/results/train_step.json", "JSON output path.")
FLAGS = flags.FLAGS

# name -> (experiment, overrides)
CASES = {
    "default": ("default", []),
    "64x64_b16": ("default", ["data.height=64", "data.width=64", "train.batch_size=16"]),
    "tiny": ("tiny", []),
}


def bench_case(name: str, experiment: str, overrides: list[str], steps: int, warmup: int) -> dict:
    import tensorflow as tf

    from tfvideogen import config as config_lib
    from tfvideogen import data as data_lib
    from tfvideogen.training import trainer

    cfg = config_lib.resolve(experiment, "", overrides + list(FLAGS.override))
    t = cfg.train
    trainer.set_precision(t.mixed_precision)
    strategy = tf.distribute.get_strategy()
    task = trainer.build_task(cfg)
    g_opt = trainer.make_optimizer(t.g_learning_rate, t, "g")
    d_opt = trainer.make_optimizer(t.d_learning_rate, t, "d")
    rng = tf.random.Generator.from_seed(0)
    step_fn = trainer.make_train_step(task, g_opt, d_opt, rng, cfg, strategy)
    ds = data_lib.batched(data_lib.load(cfg.data.name, frames=cfg.data.frames,
                                        height=cfg.data.height, width=cfg.data.width),
                          t.batch_size)
    # Time the step alone: feed one cached batch (the input pipeline has its own benchmark).
    batch = next(iter(ds))
    for i in range(warmup):
        step_fn(batch, tf.constant(i, tf.int64))["d_loss"].numpy()
    t0 = time.perf_counter()
    for i in range(steps):
        out = step_fn(batch, tf.constant(warmup + i, tf.int64))
    out["d_loss"].numpy()
    dt = (time.perf_counter() - t0) / steps
    d = cfg.data
    return {
        "case": name, "clip": f"{d.frames}x{d.height}x{d.width}", "batch": t.batch_size,
        "precision": t.mixed_precision, "upsampling": cfg.model.generator.upsampling,
        "frame_head": cfg.model.discriminator.frame_frames,
        "g_params": task.generator.count_params(), "d_params": task.discriminator.count_params(),
        "s_per_step": dt, "steps_per_s": 1 / dt, "videos_per_s": t.batch_size / dt,
        "ms_per_video": 1000 * dt / t.batch_size,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv):
    rows = []
    for name in FLAGS.cases.split(","):
        if name not in CASES:
            raise app.UsageError(f"unknown case {name!r}; valid: {', '.join(CASES)}")
        experiment, overrides = CASES[name]
        rows.append(bench_case(name, experiment, overrides, FLAGS.steps, FLAGS.warmup))
    cols = ["case", "clip", "batch", "precision", "upsampling", "frame_head", "g_params",
            "d_params", "s_per_step", "steps_per_s", "videos_per_s", "ms_per_video",
            "peak_rss_mb"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])
                                for c in cols) + " |")
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump({"overrides": list(FLAGS.override), "results": rows}, f, indent=2)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
