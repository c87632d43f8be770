"""Where a step's time goes, by TF op type, from a TF profiler trace.

    python benchmarks/train_step.py --cases=64x64_b16 --profile_steps=5

`trace(fn, steps, logdir)` runs `fn` under `tf.profiler.experimental` and
`op_times(logdir)` reads the trace (the `.xplane.pb` the profiler writes) back:
per op type, its count and self time, summed over TF's executor threads
(`tf_Compute/...`). An op's time there is its wall time on the thread that ran
it, including the oneDNN/Eigen worker threads it fans out to; ops that ran on
both executor threads at once are both counted, so shares (not sums) are what
compares with the step time. Self time: an op's time minus the ops nested in
it on the same thread (function-call and control-flow ops).

`kind(op_type)` groups the types: the convolutions and matmuls the FLOP count
(benchmarks/flops.py) covers, and the rest it leaves out (norms, activations,
augmentation, optimizer and EMA updates, casts, copies).
"""

from __future__ import annotations

import collections
import glob
import os
from collections.abc import Callable

# The FLOP count covers these (forward, input- and filter-gradient kernels).
_CONV_MARKERS = ("Conv2D", "Conv3D", "DepthwiseConv")
_MATMUL_MARKERS = ("MatMul", "Einsum")


def trace(fn: Callable[[int], None], steps: int, logdir: str) -> str:
    """Runs `fn(i)` for i in range(steps) under the profiler; returns the trace path."""
    import tensorflow as tf

    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    tf.profiler.experimental.start(logdir)
    try:
        for i in range(steps):
            fn(i)
    finally:
        tf.profiler.experimental.stop()
    found = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not found:
        raise FileNotFoundError(f"the profiler wrote no .xplane.pb under {logdir}")
    return found[-1]


def op_times(xplane_path: str) -> dict[str, tuple[int, float]]:
    """op type -> (count, self seconds) over the host's executor threads."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as f:
        space.ParseFromString(f.read())
    count: collections.Counter = collections.Counter()
    self_ps: collections.Counter = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            # Op events are named "<node name>:<op type>"; TraceMe regions
            # (ThreadpoolListener::..., ExecutorState::Process) have no ':' pair.
            ops = []
            for e in line.events:
                name = names.get(e.metadata_id, "")
                if ":" in name and "::" not in name:
                    ops.append((e.offset_ps, e.offset_ps + e.duration_ps, name.rsplit(":", 1)[1]))
            ops.sort(key=lambda o: (o[0], -o[1]))
            stack: list[list] = []  # [end, type, self_ps]
            for start, end, op_type in ops:
                while stack and stack[-1][0] <= start:
                    _close(stack.pop(), count, self_ps)
                if stack:
                    stack[-1][2] -= end - start  # nested: not the parent's own time
                stack.append([end, op_type, end - start])
            while stack:
                _close(stack.pop(), count, self_ps)
    return {t: (count[t], self_ps[t] / 1e12) for t in count}


def _close(entry: list, count: collections.Counter, self_ps: collections.Counter) -> None:
    _, op_type, ps = entry
    count[op_type] += 1
    self_ps[op_type] += max(ps, 0)


def kind(op_type: str) -> str:
    """"conv", "matmul" (both in the FLOP count) or "other"."""
    if any(m in op_type for m in _CONV_MARKERS):
        return "conv"
    if any(m in op_type for m in _MATMUL_MARKERS):
        return "matmul"
    return "other"


def summary(times: dict[str, tuple[int, float]], steps: int, top: int = 12) -> dict:
    """Per-step seconds by kind and the `top` op types by self time."""
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    total = sum(s for _, s in times.values())
    by_kind: collections.Counter = collections.Counter()
    for op_type, (_, s) in times.items():
        by_kind[kind(op_type)] += s
    ranked = sorted(times.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "op_seconds_per_step": total / steps,
        "by_kind": {k: {"seconds_per_step": s / steps, "share": s / total if total else 0.0}
                    for k, s in by_kind.items()},
        "top_ops": [{"op": t, "kind": kind(t), "calls_per_step": c / steps,
                     "ms_per_step": 1e3 * s / steps, "share": s / total if total else 0.0}
                    for t, (c, s) in ranked],
    }


def print_report(row: dict, peak: float | None) -> None:
    """Prints a benchmark row's profile: op time by kind, the conv + matmul rate, top ops.

    `row`: a `train_step.py` row (case, precision, gflop_per_step, s_per_step,
    op_profile = `summary(...)`); `peak`: the matmul GFLOP/s of the row's own
    compute dtype (a bfloat16 step's convs run on bfloat16 kernels), or None.
    """
    p = row["op_profile"]
    counted = sum(p["by_kind"].get(k, {"share": 0.0})["share"] for k in ("conv", "matmul"))
    # The FLOP count covers only convs and matmuls: their rate is the step's
    # FLOPs over their share of its time (shares of op time, applied to the step).
    rate = row["gflop_per_step"] / (row["s_per_step"] * counted) if counted else float("nan")
    print(f"\n{row['case']}: op time {p['op_seconds_per_step']:.3f} s/step over the executor "
          f"threads; " + ", ".join(f"{k} {v['share']:.0%}" for k, v in sorted(p["by_kind"].items()))
          + f"; convs + matmuls at ~{rate:.0f} GFLOP/s ({pct(rate, peak):.0f}% of the "
          f"{row['precision'].replace('mixed_', '')} matmul peak)")
    print("| op type | kind | calls/step | ms/step | share |\n|---|---|---|---|---|")
    for op in p["top_ops"]:
        print(f"| {op['op']} | {op['kind']} | {op['calls_per_step']:.0f} | "
              f"{op['ms_per_step']:.1f} | {op['share']:.1%} |")


def pct(gflops: float, peak: float | None) -> float:
    """`gflops` as a percentage of `peak` (NaN without a peak)."""
    return 100 * gflops / peak if peak else float("nan")
