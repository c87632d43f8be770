"""The benchmarks' helpers (not their timings): the op profile's parsing and report."""

import pytest
import tensorflow as tf

from benchmarks import op_profile


def test_op_profile_counts_each_op_of_a_traced_function(tmp_path):
    x = tf.random.stateless_normal([2, 4, 8, 8, 8], seed=[0, 1])
    w = tf.random.stateless_normal([3, 3, 3, 8, 8], seed=[0, 2])
    m = tf.random.stateless_normal([64, 64], seed=[0, 3])

    @tf.function
    def f():
        y = tf.nn.conv3d(x, w, [1, 1, 1, 1, 1], "SAME")
        return tf.reduce_sum(tf.nn.leaky_relu(y)) + tf.reduce_sum(tf.matmul(m, m))

    f()  # traced outside the profile
    path = op_profile.trace(lambda i: f().numpy(), 3, str(tmp_path))
    times = op_profile.op_times(path)
    conv = {t: v for t, v in times.items() if op_profile.kind(t) == "conv"}
    matmul = {t: v for t, v in times.items() if op_profile.kind(t) == "matmul"}
    # One conv and one matmul kernel per call (oneDNN names them _Mkl...).
    assert sum(c for c, _ in conv.values()) == 3, times
    assert sum(c for c, _ in matmul.values()) == 3, times
    assert all(s >= 0 for _, s in times.values())
    summary = op_profile.summary(times, 3, top=2)
    assert len(summary["top_ops"]) == 2
    assert sum(k["share"] for k in summary["by_kind"].values()) == pytest.approx(1.0)
    assert summary["by_kind"]["conv"]["seconds_per_step"] > 0


@pytest.mark.parametrize("op_type, kind", [
    ("_MklNativeConv3DBackpropFilterV2", "conv"), ("Conv2DBackpropInput", "conv"),
    ("_MklNativeFusedMatMul", "matmul"), ("BatchMatMulV2", "matmul"),
    ("_MklLayerNorm", "other"), ("Mul", "other")])
def test_op_kinds_follow_the_flop_count(op_type, kind):
    assert op_profile.kind(op_type) == kind


def test_op_profile_rejects_no_steps(tmp_path):
    with pytest.raises(ValueError, match="steps must be positive"):
        op_profile.trace(lambda i: None, 0, str(tmp_path))
    with pytest.raises(ValueError, match="steps must be positive"):
        op_profile.summary({}, 0)


def test_profile_report_rates_a_case_against_its_own_precision_peak(capsys):
    row = {"case": "c", "precision": "mixed_bfloat16", "gflop_per_step": 10.0, "s_per_step": 0.1,
           "op_profile": {"op_seconds_per_step": 0.2, "top_ops": [],
                          "by_kind": {"conv": {"share": 0.5}, "other": {"share": 0.5}}}}
    op_profile.print_report(row, 400.0)
    # 10 GFLOP over half of 0.1 s: 200 GFLOP/s, half of the bfloat16 peak.
    assert "~200 GFLOP/s (50% of the bfloat16 matmul peak)" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["layered", "conv3d"])
def test_flop_count_includes_the_layered_resampling(kind):
    from benchmarks import flops
    from tfvideogen import config as config_lib
    from tfvideogen.training import trainer

    cfg = config_lib.resolve("tiny", "", [f"model.generator.kind={kind}"])
    costs = flops.model_costs(trainer.build_task(cfg), batch=2)["generator"]
    resample = [c for c in costs if c.name == "resample"]
    if kind == "conv3d":
        assert not resample
        return
    # 2 clips x 4 frames x 2 einsums x (2 FLOPs x 16^3 multiply-adds x 4 channels).
    assert [c.flops for c in resample] == [2 * 4 * 2 * 2 * 16**3 * 4]
    assert any(c.kind == "Conv2DTranspose" for c in costs)  # the 2D trunk, as before
