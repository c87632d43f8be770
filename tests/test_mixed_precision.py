"""Mixed precision: float16 + loss scaling on both optimizers, bfloat16, float32 outputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfvideogen import data, training
from tfvideogen.training import trainer
from tfvideogen.utils import hardware


@pytest.fixture(autouse=True)
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "auto"])
def test_mixed_precision_trains_finite_steps(tmp_path, policy, monkeypatch):
    # auto on a CPU that reports AVX512-BF16 (whatever this one has) is bfloat16,
    # and the run directory records the policy that ran.
    monkeypatch.setattr(hardware, "fast_bfloat16_flag", lambda: "avx512_bf16")
    model_dir = str(tmp_path / "run")
    result = training.train(tiny_config(f"train.mixed_precision={policy}", "train.steps=2",
                                        "train.sample_every=100"), model_dir)
    assert result.step == 2
    stored = trainer.load_run_config(model_dir).train.mixed_precision
    assert stored == ("mixed_bfloat16" if policy == "auto" else policy)
    assert all(np.isfinite(v) for v in result.losses.values()), result.losses
    # The run's policy does not leak into models built after it.
    assert keras.mixed_precision.global_policy().name == "float32"
    task = result.task
    compute = "float16" if policy == "mixed_float16" else "bfloat16"
    assert task.generator.up0.compute_dtype == compute
    assert task.generator.up0.kernel.dtype == "float32"  # master weights stay float32
    # Outputs (video, logits) are float32, so losses are computed in float32.
    z = tf.random.normal([2, task.z_dim])
    emb = task.text_encoder(tf.constant(["a red square is moving up and down"] * 2))
    video = task.generator(z, emb)
    assert emb.dtype == video.dtype == task.discriminator(video, emb).dtype == tf.float32
    assert np.all(np.isfinite(task.get_weights()[0]))
    names = [n for n, _ in tf.train.list_variables(training.trainer.latest_checkpoint(model_dir))]
    scales = [n for n in names if "dynamic_scale" in n]
    if policy == "mixed_float16":
        # Both optimizers are loss-scaled, and the scales are checkpointed.
        assert any(n.startswith("g_optimizer") for n in scales), scales
        assert any(n.startswith("d_optimizer") for n in scales), scales
    else:
        assert not scales  # bfloat16 has float32's exponent range: no scaling


def test_loss_scale_halves_on_overflow_and_doubles_after_growth_steps():
    with trainer.precision("mixed_float16"):
        cfg = tiny_config("train.mixed_precision=mixed_float16")
        task = trainer.build_task(cfg)
        g_opt = trainer.make_optimizer(1e-3, cfg.train, "g_optimizer")
        d_opt = trainer.make_optimizer(1e-3, cfg.train, "d_optimizer")
    assert isinstance(g_opt, keras.optimizers.LossScaleOptimizer)
    assert isinstance(d_opt, keras.optimizers.LossScaleOptimizer)
    g_opt.build(task.generator.trainable_variables)
    d_opt.build(task.discriminator.trainable_variables + task.text_encoder.trainable_variables)
    for opt in (g_opt, d_opt):
        opt.dynamic_growth_steps = 2  # read when the step is traced
        # Injected overflow: a scaled loss of 2^40 sends the float16 gradients to inf.
        opt.dynamic_scale.assign(2.0**40)
    step_fn = trainer.make_train_step(task, g_opt, d_opt, tf.random.Generator.from_seed(0), cfg,
                                      tf.distribute.get_strategy())
    batch = next(iter(data.batched(trainer.training_stream(cfg), 4)))
    params = task.generator.trainable_weights + task.discriminator.trainable_weights
    before = [w.numpy().copy() for w in params]

    step_fn(batch, tf.constant(0, tf.int64))
    assert float(g_opt.dynamic_scale) == float(d_opt.dynamic_scale) == 2.0**39
    # Overflowed steps are skipped: no weight moved, no Adam iteration counted.
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, params))
    assert int(g_opt.iterations) == int(d_opt.iterations) == 0

    for opt in (g_opt, d_opt):
        opt.dynamic_scale.assign(4.0)  # small enough for finite float16 gradients
    step_fn(batch, tf.constant(1, tf.int64))
    assert float(g_opt.dynamic_scale) == float(d_opt.dynamic_scale) == 4.0  # 1 good step
    assert int(g_opt.iterations) == int(d_opt.iterations) == 1
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, params))
    step_fn(batch, tf.constant(2, tf.int64))
    assert float(g_opt.dynamic_scale) == float(d_opt.dynamic_scale) == 8.0  # 2 good: doubled
    assert all(np.all(np.isfinite(w.numpy())) for w in params)


def test_precision_context_restores_policy_and_rejects_unknown():
    with trainer.precision("mixed_bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="mixed_precision='fp8'"), trainer.precision("fp8"):
        pass
    assert keras.mixed_precision.global_policy().name == "float32"


def test_cpu_flags_pick_the_auto_precision(monkeypatch):
    cpuinfo = ("processor\t: 0\nmodel name\t: x\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
               "processor\t: 1\nflags\t\t: fpu\n")
    assert hardware.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert hardware.cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert hardware.cpu_flags("model name: no flags line") == frozenset()
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert hardware.fast_bfloat16_flag(hardware.cpu_flags(cpuinfo)) == "avx512_bf16"
    assert hardware.fast_bfloat16_flag(frozenset({"amx_bf16", "avx512_bf16"})) == "amx_bf16"
    assert hardware.fast_bfloat16_flag(frozenset({"avx2", "avx512f"})) is None
    # Without oneDNN, TF's own bfloat16 kernels are the slow ones whatever the CPU.
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert hardware.fast_bfloat16_flag(frozenset({"amx_bf16"})) is None

    monkeypatch.setattr(hardware, "fast_bfloat16_flag", lambda: "amx_bf16")
    assert trainer.resolve_precision("auto") == ("mixed_bfloat16", "auto: the CPU has amx_bf16")
    monkeypatch.setattr(hardware, "fast_bfloat16_flag", lambda: None)
    assert trainer.resolve_precision("auto")[0] == "float32"
    assert trainer.resolve_precision("mixed_float16") == ("mixed_float16", "requested")
    with trainer.precision("auto"):
        assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="mixed_precision='fp8'; valid: auto, float32, mixed_"):
        trainer.resolve_precision("fp8")
