"""Typed experiment configs: dataclasses, named experiments, layered overrides.

A config is built in layers (later wins), as in tensorflow/models `hyperparams`:

1. a named experiment from :data:`EXPERIMENTS` (``default`` unless told);
2. an optional JSON file (``--config_file``), holding any subset of fields;
3. dotted ``key=value`` overrides (``--override train.steps=10``);
4. the dedicated flags of ``train.py`` (``--steps`` ...), which are overrides too.

The resolved config is written as ``config.json`` into the run directory, and a
rerun on the same directory checks that its model section still matches.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# "auto": mixed_bfloat16 on CPUs with bfloat16 matmul instructions, else float32
# (resolved when a run starts; config.json stores the result).
PRECISION_CHOICES = ("auto", *PRECISIONS)
LOSSES = ("hinge", "non_saturating")
GENERATORS = ("conv3d", "mocogan", "layered")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# Generator noise: "stream" = a checkpointed tf.random.Generator, one stream per
# replica; "indexed" = z of a global example is a pure function of (seed, its
# index in the run), so results do not depend on the replica count.
NOISE = ("stream", "indexed")
EMBEDDING_GRADS = ("sparse", "dense")
WORD_LOSSES = ("softmax", "sigmoid")


@dataclasses.dataclass
class DataConfig:
    """Which clips to train on and how they are shaped."""

    # A built-in dataset name (see `tfvideogen.data.available()`) or a
    # `prefix:argument` spec such as `tfrecord:/data/shards-*.tfrecord`.
    name: str = "moving_shapes"
    frames: int = 16
    height: int = 32
    width: int = 32
    split: str = "train"
    seed: int = 0
    # moving_shapes: 1 or 2 objects per clip.
    num_objects: int = 1
    # bouncing_digits: optional MNIST `.npz` (keras.datasets format).
    mnist_path: str = ""
    # File readers (tfrecord:, videos:): shuffle buffer and random horizontal flip.
    shuffle_buffer: int = 256
    flip: bool = False


@dataclasses.dataclass
class TextEncoderConfig:
    """The caption encoder. `kind` is `builtin` or a TF-Hub handle/URL/path."""

    kind: str = "builtin"
    # Builtin only (a hub encoder's output size is the module's).
    embedding_dim: int = 64
    hidden_dim: int = 64
    output_dim: int = 128
    max_tokens: int = 24
    # Builtin only: "gru" (bidirectional GRU over the words) or "mean" (masked mean
    # of the word embeddings: a bag of words, order-blind, additive in the words) or
    # "routed" (each word's vector goes to one of `heads` heads, the output is the
    # heads side by side; made for generator.kind=layered, see TextEncoder).
    pooling: str = "gru"
    heads: int = 2
    # Routed pooling only: "motion" sends the dataset's motion words (its "motion"
    # attribute's own words) to head 1 and every other word to head 0; or the head-1
    # words themselves, space-separated; "" learns soft shares per word (measured:
    # they stayed at 0.5, so both heads saw every word; README#Quality).
    route_words: str = ""
    # Hub encoders only: BERT-style preprocessor handle, the key picking the
    # sentence embedding from dict outputs, fine-tuning (default frozen+cached).
    preprocessor: str = ""
    output_key: str = "pooled_output"
    trainable: bool = False


@dataclasses.dataclass
class GeneratorConfig:
    # "conv3d" (VideoGenerator), "mocogan" (content + GRU motion codes, 2D frames) or
    # "layered" (one appearance layer per clip moved by per-frame poses; reads the
    # text embedding in two halves, appearance and motion: LayeredGenerator).
    kind: str = "conv3d"
    z_dim: int = 64
    # mocogan and layered only: size of the per-frame motion code.
    motion_dim: int = 16
    # Channels of the first block; halved at every upsampling (min `min_width`).
    base_width: int = 128
    min_width: int = 16
    # Frames/height/width of the first feature map (each doubled until the clip size).
    # 4 frames (2 until 2026-11-27, tenth session): three seeds gave 68% / 67% caption accuracy
    # against 63% / 60% from 2, objects of a steady size (README#Quality).
    base_frames: int = 4
    base_size: int = 4
    # "transpose" (4x4x4 stride-2 transposed convs) or "nearest" (upsample + 3x3x3 conv).
    upsampling: str = "nearest"
    # conv3d only: "tanh" or "clip" (linear while training, clipped to [-1, 1] for
    # samples and exports; no saturated gradients, see VideoGenerator).
    output_activation: str = "tanh"
    # Kernel of the final RGB conv, 3 (3x3x3) or 1 (per-voxel, StyleGAN's toRGB; conv3d
    # only), or 0: no RGB conv, the last upsampling conv outputs RGB (DCGAN). 0 since the
    # sixteenth session: a 26% cheaper step (no full-resolution feature map), so
    # 3,750 steps fit where 3,000 did (README#Quality).
    rgb_kernel: int = 0


@dataclasses.dataclass
class DiscriminatorConfig:
    base_width: int = 32
    max_width: int = 256
    spectral_norm: bool = False
    # Frames scored by the per-frame 2D head (0 = video head only).
    frame_frames: int = 4
    # Spatial average-pooling factor of the video head's input (DVD-GAN: 2).
    video_downsample: int = 1
    # Width of a stride-1 full-resolution conv opening the frame head (0 = none).
    frame_stem: int = 0
    # First width of the frame trunk (doubled per layer up to max_width; 0 =
    # base_width, as the clip trunk): the frame head is where shapes are judged.
    # 48 (widths 48-96-192 against the clip trunk's 32-64-128) since the
    # eighteenth session, with train.mismatch_weight=0 paying for its time:
    # the circles the judge missed were the main error left (README#Quality).
    frame_base_width: int = 48
    # Auxiliary word classifier on each head's pooled features (AC-GAN over the
    # caption's words): D learns on real clips which vocabulary words their
    # caption holds, G is trained to make its clips show its caption's words.
    # Weighted by train.word_weight. On by default: caption accuracy 60% -> 84% on
    # the default run (README#Quality).
    word_head: bool = True
    # How each head pools its last feature map: "sum" (BigGAN), "max" or "sum_max"
    # (both, concatenated), and "group": a per-sample group norm after each of D's
    # stride-2 convs, "group_frame" in the frame trunk only ("none": off). Max
    # pooling, group norm and the sigmoid word loss are the default since
    # 2026-11-27 (eleventh session): with sum pooling and no norm D's word head told
    # shapes apart on only 70-76% of real clips (near chance on held-out ones) after
    # a whole run; with these, 98-100%, and caption accuracy rose from 69% to 82%
    # (three seeds, README#Quality). "group_frame" since the twelfth session: 81% /
    # 85% against 82% / 86% (three seeds; FCD a little worse) in 13.8-14.6 instead
    # of 16.8 minutes, within issue #2's 15 (the clip trunk's word head does not
    # learn shapes with its norm either).
    pooling: str = "max"
    norm: str = "group_frame"


@dataclasses.dataclass
class ModelConfig:
    text_encoder: TextEncoderConfig = dataclasses.field(default_factory=TextEncoderConfig)
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig)


@dataclasses.dataclass
class TrainConfig:
    # 3750 x 16 clips: 13.5-14.5 min on a 2-core CPU at 16x32x32 (3000 until the
    # sixteenth session's cheaper generator; 4000 read 0.5 points more and took
    # 14.4-15.3 min, over issue #7's 15; README#Quality).
    steps: int = 3750
    batch_size: int = 16
    loss: str = "hinge"
    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    # Adam's epsilon (Keras' default). It bounds how much Adam magnifies a
    # near-zero gradient: with 1e-7 a gradient of 1e-8 (float noise) still moves
    # a weight by ~lr / 10.
    adam_epsilon: float = 1e-7
    # Both learning rates fall linearly to 0 over the run's last `lr_decay_steps`
    # steps (0 = constant). The schedule depends on train.steps.
    lr_decay_steps: int = 0
    # Share of real-video/mismatched-caption negatives among D's negatives (GAN-CLS),
    # in [0, 1): the rest are generated clips. 0: no mismatched negatives (D's
    # trunks then run on [real; fake] only, a third less of their work). 0 since
    # the eighteenth session (0.5 before): training captions read 1 point better
    # and FCD lower without them (the projection heads, the word head and the
    # contrastive loss condition D), and the cheaper step pays for the default's
    # wider frame trunk (README#Quality).
    mismatch_weight: float = 0.0
    # With mismatch_weight > 0: score the real clips against their mismatched
    # captions from the features of the same D pass (`VideoDiscriminator.score`):
    # D's conv trunks run on [real; fake], not [real; fake; real] (22.8 instead of
    # 26.4 GFLOP per step of the tenth session's default); a mismatched negative
    # then shares its real clip's augmentation. Off: measured worse than the third
    # pass (README#Quality).
    rescore_mismatch: bool = False
    # Word dropout (builtin encoder): each word of a training caption is hidden
    # from G and D with this probability (at least one word stays). A clip is
    # then a positive for any caption whose words its own caption holds, so D
    # learns what each word alone says; meant for compositional generalisation
    # (held-out attribute pairs). Off by default (README#Quality).
    word_dropout: float = 0.0
    # Weight of the word-classifier loss (model.discriminator.word_head) for D and G.
    word_weight: float = 1.0
    # The word head's loss: "softmax" (one softmax over the vocabulary against the
    # caption's words, losses.word_classification) or "sigmoid" (a yes/no per
    # word, summed: losses.word_detection; a shape word's gradient is not diluted
    # by the caption's length).
    word_loss: str = "sigmoid"
    # Weight of the word head's loss on generated clips for D (0 = off; applies to a
    # word head with word_loss=sigmoid, ignored otherwise): D also learns that a
    # generated clip is not a real instance of its caption's words
    # (losses.word_rejection), so G cannot pass with a clip that only looks like a
    # word to a head trained on real clips. On since the thirteenth session,
    # rejecting the attribute words only (README#Quality).
    fake_word_weight: float = 0.25
    # Which caption words fake_word_weight rejects on generated clips: "attributes"
    # (words naming an attribute value, the dataset's `attribute_words()`) or
    # "all": words in every caption ("a", "is", "moving") then become extra
    # unconditional real/fake heads (three seeds trained 3-10 points worse).
    fake_words: str = "attributes"
    # Video-caption contrastive loss (XMC-GAN) on D's pooled features: D learns it
    # on real clips, G on its own; each clip is told apart from the batch's other
    # captions (0 = off). On by default: without it the default run can collapse
    # to black videos (README#Quality).
    contrastive_weight: float = 1.0
    contrastive_temperature: float = 0.1
    # 0 disables the generator EMA.
    ema_decay: float = 0.999
    # Lazy R1 penalty on real clips (0 = off), applied every `r1_every` D steps.
    r1_gamma: float = 0.0
    r1_every: int = 4
    # DiffAugment policy for D inputs, e.g. "translation,cutout" ("" = off). Translation
    # lifted the default run's caption accuracy from 50% to 75% (measured without the
    # contrastive loss, README#Quality).
    augment: str = "translation"
    # "auto" (since the nineteenth session): mixed_bfloat16 where the CPU has bfloat16
    # matmul instructions (4 seeds: 92.0% / 92.0% in 11 minutes against float32's
    # 92.1% / 91.3% in 14; README#Quality), float32 elsewhere (bfloat16 is slower there).
    mixed_precision: str = "auto"
    strategy: str = "default"
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    num_samples: int = 8
    noise: str = "stream"
    # How Adam sees the text encoder's embedding-table gradient. "sparse": Keras 3's
    # IndexedSlices path, whose second moment sums per-occurrence squares, i.e. a
    # larger step for words repeated in a batch; it trains the default run far
    # better (README#Quality). "dense": textbook Adam, and the same weights on 1 or
    # N replicas (with train.noise=indexed).
    embedding_grads: str = "sparse"
    # XLA for the per-replica step (off: ~100x slower for 3D convs on CPU).
    jit_compile: bool = False
    # tf.config.threading pools (0 = TF default); only before TF's runtime starts.
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    # tf.config.experimental.enable_op_determinism(): bitwise-reproducible runs.
    deterministic: bool = False


@dataclasses.dataclass
class ExperimentConfig:
    name: str = "default"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def validate(self) -> ExperimentConfig:
        """Checks cross-field constraints; raises ValueError naming the field."""
        d, g, t = self.data, self.model.generator, self.train
        _check_choice("train.loss", t.loss, LOSSES)
        _check_choice("train.mixed_precision", t.mixed_precision, PRECISION_CHOICES)
        _check_choice("train.strategy", t.strategy, STRATEGIES)
        _check_choice("train.noise", t.noise, NOISE)
        _check_choice("train.embedding_grads", t.embedding_grads, EMBEDDING_GRADS)
        _check_choice("train.word_loss", t.word_loss, WORD_LOSSES)
        for key in ("intra_op_threads", "inter_op_threads"):
            if getattr(t, key) < 0:
                raise ValueError(f"train.{key} must be >= 0 (0 = TF default), "
                                 f"got {getattr(t, key)}")
        for key, value in (("data.frames", d.frames), ("data.height", d.height),
                           ("data.width", d.width), ("train.batch_size", t.batch_size),
                           ("train.steps", t.steps), ("model.generator.z_dim", g.z_dim),
                           ("train.adam_epsilon", t.adam_epsilon),
                           ("train.g_learning_rate", t.g_learning_rate),
                           ("train.d_learning_rate", t.d_learning_rate),
                           ("train.log_every", t.log_every), ("train.sample_every", t.sample_every),
                           ("train.checkpoint_every", t.checkpoint_every),
                           ("train.keep_checkpoints", t.keep_checkpoints),
                           ("train.num_samples", t.num_samples)):
            if value <= 0:
                raise ValueError(f"{key} must be positive, got {value}")
        for key, value in (("train.beta_1", t.beta_1), ("train.beta_2", t.beta_2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value}")
        if t.r1_gamma < 0:
            raise ValueError(f"train.r1_gamma must be >= 0 (0 = off), got {t.r1_gamma}")
        for key, size, base in (("data.frames", d.frames, g.base_frames),
                                ("data.height", d.height, g.base_size),
                                ("data.width", d.width, g.base_size)):
            ratio = size // base
            if size % base or ratio & (ratio - 1):
                raise ValueError(
                    f"{key}={size} must be a power-of-two multiple of the generator's "
                    f"base size {base} (e.g. {base * 4} or {base * 8})")
        if d.height != d.width:
            raise ValueError(f"square frames only: data.height={d.height} != data.width={d.width}")
        if not 0.0 <= t.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
        if t.contrastive_weight < 0 or t.contrastive_temperature <= 0:
            raise ValueError("train.contrastive_weight must be >= 0 and "
                             "train.contrastive_temperature > 0, got "
                             f"{t.contrastive_weight} and "
                             f"{t.contrastive_temperature}")
        if not 0.0 <= t.word_dropout < 1.0:
            raise ValueError(f"train.word_dropout must be in [0, 1), got {t.word_dropout}")
        if t.word_dropout and self.model.text_encoder.kind != "builtin":
            raise ValueError("train.word_dropout needs model.text_encoder.kind=builtin (it drops "
                             f"token ids), got {self.model.text_encoder.kind!r}")
        if not 0 <= t.lr_decay_steps <= t.steps:
            raise ValueError(f"train.lr_decay_steps must be in [0, train.steps="
                             f"{t.steps}], got {t.lr_decay_steps}")
        if not 0.0 <= t.mismatch_weight < 1.0:
            # D's negatives are (1 - w) x generated + w x mismatched: at 1 D's
            # adversarial loss never sees a generated clip.
            raise ValueError(f"train.mismatch_weight must be in [0, 1) (the share of "
                             f"mismatched-caption negatives; 1 leaves no generated clips in "
                             f"D's loss), got {t.mismatch_weight}")
        if t.rescore_mismatch and t.mismatch_weight == 0:
            # Weight 0 (the default) has no mismatched negatives to rescore.
            raise ValueError("train.rescore_mismatch=true needs train.mismatch_weight > 0 (it "
                             "rescores the mismatched-caption negatives; 0 turns them off)")
        if t.word_weight < 0:
            raise ValueError(f"train.word_weight must be >= 0, got {t.word_weight}")
        if t.fake_word_weight < 0:
            raise ValueError(f"train.fake_word_weight must be >= 0, got "
                             f"{t.fake_word_weight}")
        _check_choice("train.fake_words", t.fake_words, ("all", "attributes"))
        if self.model.discriminator.word_head and t.word_dropout:
            raise ValueError("model.discriminator.word_head (on by default) and "
                             "train.word_dropout cannot be combined: a word-dropped caption "
                             "does not say which words its clip lacks; add "
                             "--override=model.discriminator.word_head=false")
        if t.r1_every <= 0:
            raise ValueError(f"train.r1_every must be positive, got {t.r1_every}")
        _check_choice("model.generator.kind", g.kind, GENERATORS)
        from tfvideogen.models.discriminator import NORMS as D_NORMS
        from tfvideogen.models.discriminator import POOLING as D_POOLING
        from tfvideogen.models.generator import OUTPUTS, RGB_KERNELS
        from tfvideogen.models.text_encoder import POOLING
        from tfvideogen.training.augment import check_policy

        _check_choice("model.generator.output_activation", g.output_activation, OUTPUTS)
        if g.rgb_kernel not in RGB_KERNELS:
            raise ValueError(f"model.generator.rgb_kernel must be one of {RGB_KERNELS}, "
                             f"got {g.rgb_kernel}")
        if g.kind != "conv3d" and g.output_activation != "tanh":
            raise ValueError(f"model.generator.output_activation={g.output_activation} needs "
                             "model.generator.kind=conv3d")
        if g.kind != "conv3d" and g.rgb_kernel == 1:
            raise ValueError(f"model.generator.rgb_kernel=1 needs model.generator.kind=conv3d "
                             f"(the {g.kind} generator has a 3x3 RGB conv, or none with 0)")
        te = self.model.text_encoder
        _check_choice("model.text_encoder.pooling", te.pooling, POOLING)
        if te.pooling == "routed" and (te.heads < 1 or te.output_dim % te.heads):
            raise ValueError(f"model.text_encoder.heads={te.heads} must be >= 1 and divide "
                             f"model.text_encoder.output_dim={te.output_dim}")
        if te.route_words.strip() and (te.pooling != "routed" or te.heads != 2):
            raise ValueError("model.text_encoder.route_words needs "
                             "model.text_encoder.pooling=routed and heads=2")
        _check_choice("model.discriminator.pooling", self.model.discriminator.pooling, D_POOLING)
        _check_choice("model.discriminator.norm", self.model.discriminator.norm, D_NORMS)
        if self.model.discriminator.frame_base_width < 0:
            raise ValueError(f"model.discriminator.frame_base_width must be >= 0 (0: base_width), "
                             f"got {self.model.discriminator.frame_base_width}")
        check_policy(t.augment)
        if d.num_objects not in (1, 2):
            raise ValueError(f"data.num_objects must be 1 or 2, got {d.num_objects}")
        return self


def _check_choice(key: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not one of {', '.join(choices)}")


# --------------------------------------------------------------------------- #
# Named experiments.

def _default() -> ExperimentConfig:
    return ExperimentConfig(name="default")


def _tiny() -> ExperimentConfig:
    """Seconds per step on a laptop: for tests and smoke runs."""
    cfg = ExperimentConfig(name="tiny")
    cfg.data.frames, cfg.data.height, cfg.data.width = 4, 16, 16
    cfg.data.shuffle_buffer = 8
    cfg.model.text_encoder = TextEncoderConfig(embedding_dim=8, hidden_dim=8, output_dim=16)
    cfg.model.generator = GeneratorConfig(z_dim=8, base_width=16, min_width=8, base_frames=1)
    cfg.model.discriminator = DiscriminatorConfig(base_width=8, max_width=16, word_head=False,
                                                  frame_base_width=0)
    # No augmentation, contrastive loss or word head: the cheapest step; tests
    # switch them on.
    # The mismatched negatives stay on: tests (distribution, rescoring) cover
    # their pass through D.
    cfg.train = TrainConfig(steps=4, batch_size=4, log_every=2, sample_every=4,
                            checkpoint_every=2, num_samples=2, augment="",
                            contrastive_weight=0.0, mismatch_weight=0.5,
                            mixed_precision="float32")  # the same numbers on any CPU
    return cfg


def _moving_shapes_64() -> ExperimentConfig:
    cfg = ExperimentConfig(name="moving_shapes_64")
    cfg.data.height = cfg.data.width = 64
    cfg.train.batch_size = 16
    return cfg


def _bouncing_digits_64() -> ExperimentConfig:
    """Issue #7's second bar: bouncing_digits 16x64x64 in <= 60 CPU-minutes.

    The layered generator with fixed word routes (the caption's motion words
    drive only the motion half), since the twenty-first session: held-out
    digit/motion pairs compose - 98.4% of training and 96.5% of held-out pairs
    right in 60 minutes, the judge's own accuracy on real clips (README#Quality).
    The conv3d generator learned the training pairs (98%) but drew held-out
    digits as the digit it had seen with that motion (25%).
    """
    cfg = ExperimentConfig(name="bouncing_digits_64")
    cfg.data.name = "bouncing_digits"
    cfg.data.height = cfg.data.width = 64
    cfg.train.batch_size = 16
    cfg.model.generator.kind = "layered"
    cfg.model.text_encoder.pooling = "routed"
    cfg.model.text_encoder.route_words = "motion"
    # 32 channels (not 16) in the appearance trunk's 32x32 and 64x64 blocks (a
    # 2D image per clip: cheap).
    cfg.model.generator.min_width = 32
    # The clip head on 2x2-pooled clips (DVD-GAN), the frame head at full size.
    # Without this and the wider trunk above, D's loss sat at ~0 from step 100
    # and G collapsed by step 2,000 (twentieth session; the two changes were
    # measured together only).
    cfg.model.discriminator.video_downsample = 2
    # 2.35 steps/s in bfloat16 on this 2-core CPU: 8,537 steps fit 60 minutes
    # (the measured run); 8,000 leave a margin for start-up and slower CPUs.
    cfg.train.steps = 8000
    return cfg


def _two_shapes() -> ExperimentConfig:
    cfg = ExperimentConfig(name="two_shapes")
    cfg.data.num_objects = 2
    return cfg


EXPERIMENTS: dict[str, Callable[[], ExperimentConfig]] = {
    "default": _default,
    "tiny": _tiny,
    "moving_shapes_64": _moving_shapes_64,
    "bouncing_digits_64": _bouncing_digits_64,
    "two_shapes": _two_shapes,
}


def get_experiment(name: str) -> ExperimentConfig:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]()


# --------------------------------------------------------------------------- #
# Serialisation and overrides.

def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, values: Mapping[str, Any], *, base: Any = None) -> Any:
    """Builds `cls` from a (possibly partial) nested dict, on top of `base`."""
    obj = copy.deepcopy(base) if base is not None else cls()
    _merge(obj, values, prefix="")
    return obj


def _merge(obj: Any, values: Mapping[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    fields = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ValueError(f"unknown config field {path!r}; valid: {', '.join(sorted(fields))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"config field {path!r} is a section; give a mapping")
            _merge(current, value, prefix=path + ".")
        else:
            setattr(obj, key, _coerce(path, value, hints[key]))


def _coerce(path: str, value: Any, hint: Any) -> Any:
    kind = hint if isinstance(hint, type) else type(None)
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            return bool(value)
        if kind in (int, float, str):
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"config field {path!r} expects {kind.__name__}, got {value!r}") from None
    return value


def apply_overrides(cfg: ExperimentConfig, overrides: Iterable[str]) -> ExperimentConfig:
    """Applies `section.field=value` strings.

    One string may hold several, comma-separated; a comma-separated piece
    without `=` continues the previous value, so list-like values work:
    `train.augment=translation,cutout,train.steps=10`.
    """
    pairs: list[list[str]] = []
    for item in overrides:
        for part in filter(None, (p.strip() for p in item.split(","))):
            if "=" in part:
                pairs.append([s.strip() for s in part.split("=", 1)])
            elif pairs and pairs[-1][0]:
                pairs[-1][1] += "," + part
            else:
                raise ValueError(f"override {part!r} is not of the form key=value")
        pairs.append(["", ""])  # a value never continues into the next string
    nested: dict[str, Any] = {}
    for key, value in pairs:
        if not key:
            continue
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(ExperimentConfig, nested, base=cfg)


def load_json(path: str) -> dict[str, Any]:
    import tensorflow as tf  # gfile: local, gs:// and friends.

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with tf.io.gfile.GFile(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path} is not valid JSON: {e}") from None


def resolve(experiment: str = "default", config_file: str = "",
            overrides: Iterable[str] = ()) -> ExperimentConfig:
    """The layered config: experiment, then file, then overrides; validated."""
    cfg = get_experiment(experiment)
    if config_file:
        cfg = from_dict(ExperimentConfig, load_json(config_file), base=cfg)
    cfg = apply_overrides(cfg, overrides)
    return cfg.validate()


def dumps(cfg: ExperimentConfig) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


# Fields whose default changed after runs were stored without them: a stored
# config (config.json) lacking one was trained with this value.
LEGACY_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("model", "discriminator", "word_head"): False,  # default True since 2026-11-27
    # Defaults since the eleventh session (2026-11-27).
    ("model", "discriminator", "pooling"): "sum",
    ("model", "discriminator", "norm"): "none",
    ("train", "word_loss"): "softmax",
    # Defaults since the thirteenth session (2026-11-28).
    ("train", "fake_word_weight"): 0.0,
    ("train", "fake_words"): "all",
    # Stored configs hold rgb_kernel since it exists; 3 was its default until the
    # sixteenth session (2026-11-28).
    ("model", "generator", "rgb_kernel"): 3,
    # Stored configs hold mismatch_weight (0.5 until the eighteenth session); a
    # config that predates frame_base_width (dc4fd26) built its frame trunk at
    # base_width.
    ("model", "discriminator", "frame_base_width"): 0,
}


def loads(text: str) -> ExperimentConfig:
    """A stored run config; fields it predates take the value the run used."""
    values = json.loads(text)
    for path, legacy in LEGACY_DEFAULTS.items():
        node = values
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] not in node:
            node[path[-1]] = legacy
    return from_dict(ExperimentConfig, values)
