"""Input-pipeline benchmark: clips/s from TFRecord shards and from raw video files,
and the fraction of a real training run spent waiting on input.

    python benchmarks/input_pipeline.py                  # 64 synthetic mp4s, 16x64x64 clips
    python benchmarks/input_pipeline.py --videos=/data/my_clips --train_steps=0

Steps: (1) writes synthetic mp4 videos (moving shapes over a noise texture,
96x128, H.264) unless --videos is given; (2) prepares them into TFRecord shards
(prepare_data's library: clips of 16 frames, short side 64, center crop);
(3) times `tfrecord:` and `videos:` pipelines (batched, as the trainer
consumes them) for --seconds each; (4) runs --train_steps real training steps
of the `--experiment` (default: `default`) fed by the `tfrecord:` pipeline and
measures the time spent in `next(iterator)` versus the whole step.

Targets (issue #3): TFRecord clips/s >= 10x the clips/s the training step
consumes, and input wait < 2% of step time. Not a test: numbers depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("videos", "", "Folder/glob of real videos (default: synthetic ones).")
flags.DEFINE_integer("num_videos", 64, "Synthetic videos to write.")
flags.DEFINE_integer("video_frames", 48, "Frames per synthetic video.")
flags.DEFINE_integer("frames", 16, "Clip frames read by the pipelines.")
flags.DEFINE_integer("size", 64, "Clip height = width read by the pipelines (and prepared).")
flags.DEFINE_integer("batch_size", 32, "Batch size of the timed pipelines.")
flags.DEFINE_integer("workers", 2, "prepare_data decode threads.")
flags.DEFINE_float("seconds", 10.0, "Timed seconds per pipeline (after one warm-up batch).")
flags.DEFINE_string("experiment", "default", "Experiment of the training measurement.")
flags.DEFINE_multi_string("override", [], "Overrides for the training measurement.")
flags.DEFINE_integer("train_steps", 8, "Timed training steps (0 = skip); 2 more warm up.")
flags.DEFINE_string("work_dir", "", "Where videos/shards go (default: a temp dir, removed).")
flags.DEFINE_string("out", "benchmarks/results/input_pipeline.json", "JSON output path.")
FLAGS = flags.FLAGS


def write_synthetic_videos(folder: str, count: int, frames: int) -> str:
    """`count` mp4s of moving shapes over a fixed noise texture (realistic compression)."""
    import imageio.v3 as iio
    import numpy as np

    from tfvideogen import data

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = rng.normal(0, 12, (1, 96, 128, 3))
    ds = data.load("moving_shapes", frames=frames, height=96, width=128, num_examples=count)
    with open(os.path.join(folder, "captions.csv"), "w") as f:
        for i, e in enumerate(ds.as_numpy_iterator()):
            clip = np.clip((e["video"] + 1.0) * 127.5 + texture, 0, 255).astype(np.uint8)
            name = f"clip{i:04d}.mp4"
            iio.imwrite(os.path.join(folder, name), clip, extension=".mp4", fps=24,
                        codec="libx264", quality=7, macro_block_size=1)
            f.write(f"{name},{e['caption'].decode()}\n")
    return folder


def clips_per_second(name: str, frames: int, size: int, batch: int, seconds: float,
                     **options) -> dict:
    from tfvideogen import data

    t0 = time.perf_counter()
    ds = data.batched(data.load(name, frames=frames, height=size, width=size, **options), batch)
    it = iter(ds)
    next(it)["video"].numpy()
    startup = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)["video"].numpy()
        n += batch
    dt = time.perf_counter() - t0
    return {"pipeline": name.split(":")[0] + (" (no cache)" if options.get("cache_mb") == 0
                                             else ""),
            "clip": f"{frames}x{size}x{size}", "clips_per_s": n / dt, "clips": n,
            "startup_s": startup}


def training_wait(spec: str, experiment: str, overrides: list[str], steps: int) -> dict:
    """Real train steps fed by `spec`: time in next(iterator) vs the whole step."""
    import tensorflow as tf

    from tfvideogen import config as config_lib
    from tfvideogen import data
    from tfvideogen.training import trainer

    cfg = config_lib.resolve(experiment, "", [f"data.name={spec}"] + overrides)
    cfg = trainer.with_resolved_precision(cfg)  # as train() does
    t = cfg.train
    trainer.set_precision(t.mixed_precision)
    task = trainer.build_task(cfg)
    g_opt = trainer.make_optimizer(t.g_learning_rate, t, "g")
    d_opt = trainer.make_optimizer(t.d_learning_rate, t, "d")
    step_fn = trainer.make_train_step(task, g_opt, d_opt, tf.random.Generator.from_seed(0), cfg,
                                      tf.distribute.get_strategy())
    d = cfg.data
    it = iter(data.batched(data.load(d.name, frames=d.frames, height=d.height, width=d.width,
                                     shuffle_buffer=d.shuffle_buffer), t.batch_size))
    waits, totals = [], []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        step_fn(batch, tf.constant(i, tf.int64))["d_loss"].numpy()
        t2 = time.perf_counter()
        if i >= 2:  # the first steps trace the step function
            waits.append(t1 - t0)
            totals.append(t2 - t0)
    step = sum(totals) / len(totals)
    return {"experiment": experiment, "clip": f"{d.frames}x{d.height}x{d.width}",
            "batch": t.batch_size, "s_per_step": step, "consumed_clips_per_s": t.batch_size / step,
            "input_wait_fraction": sum(waits) / sum(totals), "max_wait_s": max(waits)}


def main(argv):
    from tfvideogen.data import prepare

    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="tfvideogen-bench-")
    try:
        source = FLAGS.videos or write_synthetic_videos(os.path.join(work, "videos"),
                                                        FLAGS.num_videos, FLAGS.video_frames)
        shards = os.path.join(work, "shards")
        t0 = time.perf_counter()
        info = prepare.prepare(prepare.PrepareConfig(
            input=source, output_dir=shards, clip_frames=FLAGS.frames, size=FLAGS.size,
            clips_per_video=0, workers=FLAGS.workers, progress=False,
            videos_per_shard=max(1, FLAGS.num_videos // 8)))
        prep_s = time.perf_counter() - t0
        spec = f"tfrecord:{shards}/*.tfrecord"
        rows = [clips_per_second(spec, FLAGS.frames, FLAGS.size, FLAGS.batch_size,
                                 FLAGS.seconds),
                clips_per_second(f"videos:{source}", FLAGS.frames, FLAGS.size,
                                 FLAGS.batch_size, FLAGS.seconds, cache_mb=0),
                clips_per_second(f"videos:{source}", FLAGS.frames, FLAGS.size,
                                 FLAGS.batch_size, FLAGS.seconds)]
        print(f"prepare: {info['num_videos']['used']} videos -> {info['num_examples']} clips in "
              f"{prep_s:.1f}s ({info['num_videos']['used'] / prep_s:.1f} videos/s, "
              f"{FLAGS.workers} workers)")
        print("| pipeline | clip | clips/s | startup s |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['pipeline']} | {r['clip']} | {r['clips_per_s']:.1f} | "
                  f"{r['startup_s']:.2f} |")
        result = {"prepare": {"videos": info["num_videos"]["used"],
                              "clips": info["num_examples"], "seconds": prep_s,
                              "workers": FLAGS.workers},
                  "pipelines": rows}
        if FLAGS.train_steps > 0:
            train = training_wait(spec, FLAGS.experiment, list(FLAGS.override),
                                  FLAGS.train_steps)
            ratio = rows[0]["clips_per_s"] / train["consumed_clips_per_s"]
            train["tfrecord_over_consumed"] = ratio
            result["training"] = train
            print(f"training ({train['experiment']}, {train['clip']}, batch {train['batch']}): "
                  f"{train['s_per_step']:.2f} s/step = {train['consumed_clips_per_s']:.1f} clips/s "
                  f"consumed; tfrecord delivers {ratio:.1f}x that (target >= 10x); input wait "
                  f"{100 * train['input_wait_fraction']:.2f}% of step time (target < 2%), "
                  f"max {train['max_wait_s'] * 1000:.1f} ms")
        os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {FLAGS.out}")
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
