"""The matmul peak of this process: the yardstick for the train step's GFLOP/s.

    python benchmarks/matmul_peak.py --size=2048 --seconds=3 [--dtype=bfloat16]

Times `tf.matmul` of two [n, n] float32 (or bfloat16: AMX on CPUs that have
it) matrices (2 n^3 FLOPs each) inside a `tf.function` with the process's own
thread pools, and reports the best of several timed rounds (the least
disturbed by other load). Measure it in the
same process as the step being rated, so both see the same threads/CPU share.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def matmul_peak(size: int = 2048, seconds: float = 3.0, rounds: int = 5,
                dtype: str = "float32") -> dict[str, float]:
    """Best and median matmul GFLOP/s over `rounds` rounds of ~seconds/rounds each."""
    import tensorflow as tf

    if size <= 0 or seconds <= 0 or rounds <= 0:
        raise ValueError(f"size, seconds and rounds must be positive, got {size}, {seconds}, "
                         f"{rounds}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype={dtype!r}; valid: float32, bfloat16, float16")
    a = tf.cast(tf.random.stateless_normal([size, size], seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal([size, size], seed=[3, 4]), dtype)

    @tf.function
    def chain(a, b, k):
        # k dependent matmuls: one host round-trip per round, not per matmul.
        def body(i, x):
            return i + 1, tf.matmul(x, b) * tf.cast(1.0 / size, x.dtype)
        return tf.while_loop(lambda i, _: i < k, body, (tf.constant(0), a))[1]

    flop = 2.0 * size**3
    t0 = time.perf_counter()
    chain(a, b, tf.constant(1)).numpy()  # trace + warm-up
    one = max(time.perf_counter() - t0, 1e-4)
    per_round = max(1, int(seconds / rounds / one))
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        chain(a, b, tf.constant(per_round)).numpy()
        rates.append(flop * per_round / (time.perf_counter() - t0) / 1e9)
    rates.sort()
    return {"size": float(size), "best_gflops": rates[-1], "median_gflops": rates[len(rates) // 2]}


def main(argv):
    from absl import flags

    r = matmul_peak(flags.FLAGS.size, flags.FLAGS.seconds, dtype=flags.FLAGS.dtype)
    n = int(r["size"])
    print(f"{flags.FLAGS.dtype} matmul {n}x{n}: best {r['best_gflops']:.1f} GFLOP/s, "
          f"median {r['median_gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_integer("size", 2048, "Matrix size n (n x n float32).")
    flags.DEFINE_float("seconds", 3.0, "Total timed seconds.")
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"], "Matrix dtype.")
    app.run(main)
