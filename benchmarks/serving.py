"""Serving benchmark: latency and videos/s, in-process SavedModel vs gRPC (dev server).

    python benchmarks/serving.py                          # untrained 16x64x64, batch 1 and 8
    python benchmarks/serving.py --batches=1,4,8 --iterations=50 --rest

Builds an untrained generator of the default experiment at --frames x --size,
exports it (float32, uint8 output), then times `serving_default`:

- in-process: the loaded SavedModel signature, output to numpy;
- grpc: `GrpcClient.generate` against `serve/dev_server.py`'s server on
  127.0.0.1 (request encoding, the same signature, uint8 response decoding);
- rest (with --rest): `RestClient.generate` (JSON; expect it to be slow).

Runs of the modes are interleaved so load changes on the machine hit them
alike. Prints p50/p95 ms, videos/s and the gRPC / in-process p50 ratio
(target at batch 8: <= 1.2), and writes JSON (--out). Not a test.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("frames", 16, "Clip frames.", lower_bound=1)
flags.DEFINE_integer("size", 64, "Clip height = width.", lower_bound=4)
flags.DEFINE_string("batches", "1,8", "Comma-separated batch sizes.")
flags.DEFINE_integer("iterations", 30, "Timed calls per mode and batch.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed calls per mode and batch.", lower_bound=0)
flags.DEFINE_bool("rest", False, "Also time the REST client (JSON).")
flags.DEFINE_multi_string("override", [], "Config overrides (model.*) for the generator.")
flags.DEFINE_string("out", "benchmarks/results/serving.json", "JSON output path.")
FLAGS = flags.FLAGS


def _stats(seconds: list[float], batch: int) -> dict:
    import numpy as np

    ms = np.array(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "videos_per_s": float(batch * 1000.0 / ms.mean())}


def _modes(fn, grpc_client, rest_client, text: list[str], seeds) -> dict:
    """name -> a no-argument call producing the uint8 videos of (text, seeds)."""
    import tensorflow as tf

    def in_process():
        return fn(text=tf.constant(text), seed=tf.constant(seeds))["video"].numpy()

    modes = {"in_process": in_process, "grpc": lambda: grpc_client.generate(text, seed=seeds)}
    if rest_client is not None:
        modes["rest"] = lambda: rest_client.generate(text, seed=seeds)
    return modes


def run(frames: int, size: int, batches: list[int], iterations: int, warmup: int,
        with_rest: bool, overrides: list[str]) -> dict:
    import numpy as np
    import tensorflow as tf

    from tfvideogen import config as config_lib
    from tfvideogen import data, export, models
    from tfvideogen.serving.client import GrpcClient, RestClient
    from tfvideogen.serving.dev_server import DevServer, DevServerConfig

    cfg = config_lib.resolve("default", "", [f"data.frames={frames}", f"data.height={size}",
                                             f"data.width={size}"] + overrides)
    with export.float32_policy():
        task = models.build_task(cfg.model, data.get(cfg.data.name).vocabulary(), frames, size)
    tmp = tempfile.mkdtemp(prefix="serving_bench_")
    max_batch = max(batches)
    path = export.export_saved_model(task, tmp, serving=export.ServingConfig(
        max_batch_size=max_batch))
    fn = tf.saved_model.load(path).signatures["serving_default"]
    captions = data.get(cfg.data.name).sample_captions("train", max_batch)

    server = DevServer(DevServerConfig(tmp, port=0, rest_api_port=0 if with_rest else None,
                                       max_batch_size=max_batch, max_concurrent_requests=1))
    server.start()
    grpc_client = GrpcClient(server.target, timeout=120.0)
    rest_client = RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=300.0) \
        if with_rest else None
    rows = []
    try:
        for batch in batches:
            modes = _modes(fn, grpc_client, rest_client, captions[:batch],
                           np.arange(batch, dtype=np.int64))
            reference = modes["in_process"]()
            for name, call in modes.items():  # same bytes from every path
                if not np.array_equal(call(), reference):
                    raise RuntimeError(f"{name} video differs from the in-process one")
            times: dict[str, list[float]] = {name: [] for name in modes}
            for i in range(warmup + iterations):
                for name, call in modes.items():
                    start = time.perf_counter()
                    call()
                    if i >= warmup:
                        times[name].append(time.perf_counter() - start)
            base = _stats(times["in_process"], batch)
            for name in modes:
                row = {"mode": name, "batch": batch, **_stats(times[name], batch)}
                row["p50_vs_in_process"] = row["p50_ms"] / base["p50_ms"]
                rows.append(row)
    finally:
        grpc_client.close()
        server.stop(grace=1.0)
        tf.io.gfile.rmtree(tmp)
    return {"clip": f"{frames}x{size}x{size}", "video_bytes": frames * size * size * 3,
            "generator_params": task.sampler.count_params(), "iterations": iterations,
            "results": rows}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        batches = [int(b) for b in FLAGS.batches.split(",") if b.strip()]
    except ValueError:
        raise app.UsageError(f"--batches must be integers, got {FLAGS.batches!r}") from None
    if not batches or min(batches) < 1:
        raise app.UsageError("--batches needs positive sizes")
    report = run(FLAGS.frames, FLAGS.size, batches, FLAGS.iterations, FLAGS.warmup, FLAGS.rest,
                 list(FLAGS.override))
    cols = ["mode", "batch", "p50_ms", "p95_ms", "videos_per_s", "p50_vs_in_process"]
    print(f"clip {report['clip']}, generator {report['generator_params']:,} params, "
          f"{report['iterations']} calls per row")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in report["results"]:
        print("| " + " | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c])
                                for c in cols) + " |")
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
