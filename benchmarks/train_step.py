"""Train-step benchmark: step time, videos/s, GFLOP/s and % of the matmul peak,
input-wait fraction and peak RSS per config.

    python benchmarks/train_step.py          # default + 16x64x64 b16, each generator option
    python benchmarks/train_step.py --cases=64x64_b16 --override train.jit_compile=true
    python benchmarks/train_step.py --intra_op_threads=2 --inter_op_threads=1
    python benchmarks/train_step.py --cases=64x64_b16 --profile_steps=5   # op time by type

Per case: the step is timed on one cached batch (compute only), then for
--pipeline_steps fed by the real input pipeline (time in `next()` = input
wait). FLOPs are counted from the layer shapes (benchmarks/flops.py) and rated
against the fp32 matmul peak measured at the start of the same process
(benchmarks/matmul_peak.py; `pct_peak`) and, for mixed_bfloat16, the bfloat16
one too (`pct_own_peak`). Prints a table and writes JSON (--out). Not a
test: numbers depend on the machine and on what else runs on it.
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

from benchmarks import op_profile  # noqa: E402

flags.DEFINE_multi_string("override", [], "Overrides applied to every case.")
flags.DEFINE_integer("steps", 20, "Timed steps per case (after warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed steps per case (tracing, allocator).")
flags.DEFINE_string("cases", "default,64x64_b16_transpose,64x64_b16_nearest,64x64_b16_mocogan",
                    "Comma-separated cases (see CASES).")
flags.DEFINE_integer("pipeline_steps", 5, "Steps fed by the real input pipeline (0 = skip).")
flags.DEFINE_float("peak_seconds", 4.0,
                   "Seconds of matmul per dtype (float32, bfloat16) for the peaks (0 = skip).")
flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0 = TF default).")
flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0 = TF default).")
flags.DEFINE_string("out", "benchmarks/results/train_step.json", "JSON output path.")
flags.DEFINE_integer("profile_steps", 0,
                     "Steps traced by the TF profiler per case, after the timed ones (0 = off): "
                     "op time by type, and the share the FLOP count covers (convs, matmuls).")
flags.DEFINE_string("profile_dir", "benchmarks/results/profile", "Profiler traces (per case).")
flags.DEFINE_bool("text_cache", True, "Cache a frozen (TF-Hub) text encoder's caption embeddings; "
                  "--notext_cache runs the encoder every step (to measure the cache).")
FLAGS = flags.FLAGS

# name -> (experiment, overrides)
CASES = {
    "default": ("default", []),
    "64x64_b16": ("default", ["data.height=64", "data.width=64", "train.batch_size=16"]),
    # The reference size, once per generator option (per-video cost of each).
    "64x64_b16_transpose": ("default", ["data.height=64", "data.width=64", "train.batch_size=16",
                                        "model.generator.upsampling=transpose"]),
    "64x64_b16_nearest": ("default", ["data.height=64", "data.width=64", "train.batch_size=16",
                                      "model.generator.upsampling=nearest"]),
    "64x64_b16_mocogan": ("default", ["data.height=64", "data.width=64", "train.batch_size=16",
                                      "model.generator.kind=mocogan"]),
    "64x64_b16_layered": ("default", ["data.height=64", "data.width=64", "train.batch_size=16",
                                      "model.generator.kind=layered",
                                      "model.text_encoder.pooling=routed"]),
    "tiny": ("tiny", []),
}


def bench_case(name: str, experiment: str, overrides: list[str], steps: int, warmup: int,
               peaks: dict[str, float]) -> dict:
    """One case's row; `peaks`: matmul GFLOP/s by dtype (may be empty)."""
    import tensorflow as tf

    from benchmarks import flops as flops_lib
    from tfvideogen import config as config_lib
    from tfvideogen import data as data_lib
    from tfvideogen.training import trainer

    cfg = config_lib.resolve(experiment, "", overrides + list(FLAGS.override))
    cfg = trainer.with_resolved_precision(cfg)  # as train() does
    t = cfg.train
    strategy = tf.distribute.get_strategy()
    with trainer.precision(t.mixed_precision):
        task = trainer.build_task(cfg)
        g_opt = trainer.make_optimizer(t.g_learning_rate, t, "g")
        d_opt = trainer.make_optimizer(t.d_learning_rate, t, "d")
    # Built before the step, as train() does (no variable creation under XLA).
    g_opt.build(task.generator.trainable_variables)
    d_opt.build(task.discriminator.trainable_variables + task.text_encoder.trainable_variables)
    rng = tf.random.Generator.from_seed(0)
    step_fn = trainer.make_train_step(task, g_opt, d_opt, rng, cfg, strategy,
                                      cache_text=FLAGS.text_cache)
    ds = data_lib.batched(trainer.training_stream(cfg), t.batch_size)
    # Time the step alone: feed one cached batch.
    batch = next(iter(ds))
    t0 = time.perf_counter()
    step_fn(batch, tf.constant(0, tf.int64))["d_loss"].numpy()
    first = time.perf_counter() - t0  # tracing (+ XLA compilation) + one step
    for i in range(1, warmup):
        step_fn(batch, tf.constant(i, tf.int64))["d_loss"].numpy()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        out = step_fn(batch, tf.constant(warmup + i, tf.int64))
    out["d_loss"].numpy()
    dt = (time.perf_counter() - t0) / steps
    # CPU seconds (all threads) per step: steadier than wall time on a shared machine.
    cpu = (time.process_time() - cpu0) / steps
    profile = None
    if FLAGS.profile_steps:
        def traced(i):
            step_fn(batch, tf.constant(warmup + steps + i, tf.int64))["d_loss"].numpy()

        path = op_profile.trace(traced, FLAGS.profile_steps, os.path.join(FLAGS.profile_dir, name))
        profile = op_profile.summary(op_profile.op_times(path), FLAGS.profile_steps)
    # The same step fed by the real pipeline: time blocked in next() is input wait.
    wait_frac = fed_dt = float("nan")
    if FLAGS.pipeline_steps:
        it = iter(ds)
        next(it)  # start the prefetch threads
        waited, t0 = 0.0, time.perf_counter()
        for i in range(FLAGS.pipeline_steps):
            w0 = time.perf_counter()
            b = next(it)
            waited += time.perf_counter() - w0
            out = step_fn(b, tf.constant(i, tf.int64))
            out["d_loss"].numpy()  # one step at a time, as the training loop does
        fed_dt = (time.perf_counter() - t0) / FLAGS.pipeline_steps
        wait_frac = waited / (fed_dt * FLAGS.pipeline_steps)
    flops = flops_lib.step_flops(task, t.batch_size, trainer.mismatch_pass(t))
    gflops = flops["total"] / dt / 1e9
    d = cfg.data
    return {
        "case": name, "clip": f"{d.frames}x{d.height}x{d.width}", "batch": t.batch_size,
        "precision": t.mixed_precision, "jit": t.jit_compile,
        "upsampling": cfg.model.generator.upsampling,
        "frame_head": cfg.model.discriminator.frame_frames,
        "text_encoder": os.path.basename(cfg.model.text_encoder.kind.rstrip("/")),
        "text_cache": FLAGS.text_cache and not task.text_encoder.trainable_variables,
        "g_params": task.generator.count_params(), "d_params": task.discriminator.count_params(),
        "first_step_s": first, "s_per_step": dt, "cpu_s_per_step": cpu, "steps_per_s": 1 / dt,
        "videos_per_s": t.batch_size / dt,
        "ms_per_video": 1000 * dt / t.batch_size,
        "gflop_per_step": flops["total"] / 1e9,
        "g_gflop_per_video": flops["g_forward_per_video"] / 1e9,
        "gflops": gflops, "pct_peak": op_profile.pct(gflops, peaks.get("float32")),
        "pct_own_peak": op_profile.pct(gflops, peaks.get(t.mixed_precision.replace("mixed_", ""))),
        "fed_s_per_step": fed_dt, "input_wait_frac": wait_frac,
        # ru_maxrss is the process high-water mark: cumulative over the cases run so far.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "op_profile": profile,
    }


def main(argv):
    from benchmarks.matmul_peak import matmul_peak
    from tfvideogen import config as config_lib
    from tfvideogen.training import trainer

    names = FLAGS.cases.split(",")
    for name in names:
        if name not in CASES:
            raise app.UsageError(f"unknown case {name!r}; valid: {', '.join(CASES)}")
    # Thread pools first: they can only be sized before TF runs an op.
    runtime = config_lib.TrainConfig(intra_op_threads=FLAGS.intra_op_threads,
                                     inter_op_threads=FLAGS.inter_op_threads)
    trainer.configure_runtime(runtime)
    # The fp32 peak is the yardstick (pct_peak); the bfloat16 one rates
    # mixed_bfloat16 cases against their own compute dtype (pct_own_peak): on
    # CPUs with AMX it is several times the fp32 peak.
    peaks = {dtype: matmul_peak(seconds=FLAGS.peak_seconds, dtype=dtype)
             for dtype in ("float32", "bfloat16")} if FLAGS.peak_seconds else {}
    for dtype, peak in peaks.items():
        print(f"{dtype} matmul peak (this process): {peak['best_gflops']:.1f} GFLOP/s "
              f"(median {peak['median_gflops']:.1f})")
    best = {dtype: peak["best_gflops"] for dtype, peak in peaks.items()}
    rows = [bench_case(name, *CASES[name], FLAGS.steps, FLAGS.warmup, best) for name in names]
    cols = ["case", "clip", "batch", "precision", "jit", "upsampling", "frame_head",
            "text_encoder", "text_cache", "g_params", "d_params", "first_step_s", "s_per_step",
            "cpu_s_per_step", "videos_per_s", "ms_per_video", "gflop_per_step",
            "g_gflop_per_video", "gflops", "pct_peak", "pct_own_peak", "fed_s_per_step",
            "input_wait_frac", "peak_rss_mb"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])
                                for c in cols) + " |")
    for r in rows:
        if r["op_profile"]:
            # Against the case's own compute dtype: a bfloat16 step's convs run on
            # bfloat16 kernels, whose peak is twice float32's on AVX512-BF16.
            op_profile.print_report(r, best.get(r["precision"].replace("mixed_", "")))
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    tmp = FLAGS.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"overrides": list(FLAGS.override), "matmul_peaks": peaks,
                   "threads": [FLAGS.intra_op_threads, FLAGS.inter_op_threads],
                   "load_average": os.getloadavg(), "results": rows}, f, indent=2)
    os.replace(tmp, FLAGS.out)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
