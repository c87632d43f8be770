import json

import pytest

from tfvideogen import config as config_lib


def test_every_experiment_validates_and_round_trips():
    for name in config_lib.EXPERIMENTS:
        cfg = config_lib.get_experiment(name).validate()
        assert config_lib.loads(config_lib.dumps(cfg)) == cfg


def test_layers_experiment_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"steps": 7, "batch_size": 2}, "data": {"height": 64}}))
    cfg = config_lib.resolve("tiny", str(path), ["train.steps=9", "data.width=64"])
    assert cfg.train.steps == 9          # override beats file
    assert cfg.train.batch_size == 2     # file beats experiment
    assert (cfg.data.height, cfg.data.width) == (64, 64)
    assert cfg.data.frames == 4          # experiment value kept


def test_override_types_are_coerced():
    cfg = config_lib.apply_overrides(config_lib.get_experiment("default"),
                                     ["train.g_learning_rate=1e-3,model.discriminator."
                                      "spectral_norm=true", "train.steps=12"])
    assert cfg.train.g_learning_rate == pytest.approx(1e-3)
    assert cfg.model.discriminator.spectral_norm is True
    assert cfg.train.steps == 12


@pytest.mark.parametrize("override, message", [
    ("train.nope=1", "unknown config field 'train.nope'"),
    ("train.steps=abc", "expects int"),
    ("train.steps", "key=value"),
    ("model.discriminator.spectral_norm=maybe", "expects bool"),
    ("train=3", "is a section"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ValueError, match=message):
        config_lib.apply_overrides(config_lib.get_experiment("default"), [override])


@pytest.mark.parametrize("override, message", [
    ("train.loss=wgan", "train.loss='wgan' is not one of hinge, non_saturating"),
    ("train.mixed_precision=fp8", "mixed_precision"),
    ("data.height=48", "power-of-two multiple"),
    ("data.width=64", "square frames"),
    ("train.batch_size=0", "batch_size must be positive"),
    ("train.adam_epsilon=0", "adam_epsilon must be positive"),
    ("data.num_objects=3", "num_objects"),
    ("model.generator.output_activation=relu", "output_activation='relu' is not one of tanh"),
    ("model.generator.kind=mocogan model.generator.output_activation=clip", "=clip needs"),
    ("model.generator.kind=mocogan model.generator.output_activation=leaky_tanh",
     "=leaky_tanh needs"),
    ("model.text_encoder.pooling=max",
     "model.text_encoder.pooling='max' is not one of gru, mean, routed"),
    ("model.text_encoder.pooling=routed model.text_encoder.heads=3",
     "heads=3 must be >= 1 and divide model.text_encoder.output_dim=128"),
    ("model.generator.kind=layered model.generator.rgb_kernel=1", "rgb_kernel=1 needs"),
    ("model.text_encoder.route_words=motion", "route_words needs model.text_encoder.pooling"),
    ("train.word_loss=hinge", "train.word_loss='hinge' is not one of softmax, sigmoid"),
    ("model.discriminator.norm=batch",
     "model.discriminator.norm='batch' is not one of none, group, group_frame"),
    ("model.discriminator.pooling=mean",
     "model.discriminator.pooling='mean' is not one of sum, max, sum_max"),
    ("model.generator.rgb_kernel=2",
     r"model.generator.rgb_kernel must be one of \(0, 1, 3\), got 2"),
    ("model.generator.kind=mocogan model.generator.rgb_kernel=1", "rgb_kernel=1 needs"),
    ("train.mismatch_weight=1", r"mismatch_weight must be in \[0, 1\) .* got 1.0"),
    ("train.mismatch_weight=-0.5", r"mismatch_weight must be in \[0, 1\)"),
    ("train.rescore_mismatch=true",
     r"train.rescore_mismatch=true needs train.mismatch_weight > 0"),
    ("train.d_learning_rate=0", "train.d_learning_rate must be positive, got 0.0"),
    ("train.g_learning_rate=-1e-4", "train.g_learning_rate must be positive"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be positive, got 0"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints must be positive"),
    ("train.beta_2=1", r"train.beta_2 must be in \[0, 1\), got 1.0"),
    ("train.r1_gamma=-1", "train.r1_gamma must be >= 0"),
    ("model.discriminator.frame_base_width=-8",
     r"model.discriminator.frame_base_width must be >= 0 \(0: base_width\), got -8"),
])
def test_validate_rejects_inconsistent_configs(override, message):
    with pytest.raises(ValueError, match=message):
        config_lib.resolve("default", "", override.split())


def test_unknown_experiment_lists_choices():
    with pytest.raises(ValueError, match="valid: .*default.*tiny"):
        config_lib.get_experiment("huge")


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="config file not found"):
        config_lib.resolve("default", "/nonexistent/c.json")


def test_list_values_survive_comma_splitting():
    cfg = config_lib.apply_overrides(config_lib.get_experiment("default"),
                                     ["train.augment=translation,cutout,train.steps=10",
                                      "train.seed=3"])
    assert cfg.train.augment == "translation,cutout"
    assert (cfg.train.steps, cfg.train.seed) == (10, 3)
    with pytest.raises(ValueError, match="key=value"):
        config_lib.apply_overrides(cfg, ["cutout"])


def test_stored_configs_from_before_a_default_changed_keep_their_value():
    # A run stored before model.discriminator.word_head existed trained without it.
    stored = config_lib.to_dict(config_lib.get_experiment("default"))
    del stored["model"]["discriminator"]["word_head"]
    del stored["model"]["generator"]["rgb_kernel"]
    # ... and before D's pooling, norm and word loss were options (sum, none, softmax).
    for key in ("pooling", "norm"):
        del stored["model"]["discriminator"][key]
    del stored["train"]["word_loss"]
    # ... and before the fake-word term was on (the twelfth session's runs: all words).
    for key in ("fake_word_weight", "fake_words"):
        del stored["train"][key]
    # ... and before the frame trunk had its own width (it had the clip trunk's).
    del stored["model"]["discriminator"]["frame_base_width"]
    old = config_lib.loads(json.dumps(stored))
    assert old.model.discriminator.frame_base_width == 0
    assert (old.train.fake_word_weight, old.train.fake_words) == (0.0, "all")
    assert old.model.discriminator.word_head is False
    assert old.model.generator.rgb_kernel == 3
    assert (old.model.discriminator.pooling, old.model.discriminator.norm,
            old.train.word_loss) == ("sum", "none", "softmax")
    new = config_lib.get_experiment("default")
    assert new.model.discriminator.word_head is True
    assert (new.model.discriminator.pooling, new.model.discriminator.norm,
            new.train.word_loss) == ("max", "group_frame", "sigmoid")
    assert (new.train.fake_word_weight, new.train.fake_words) == (0.25, "attributes")
    assert new.model.generator.rgb_kernel == 0
    assert new.model.discriminator.frame_base_width == 48
    assert config_lib.loads(config_lib.dumps(config_lib.get_experiment("default"))) == \
        config_lib.get_experiment("default")
