"""`VideoDiscriminator`: (video, text embedding) -> realism-and-match logits."""

from __future__ import annotations

import math

import keras
from keras import ops

from tfvideogen.models.layers import PACKAGE, GroupNormalization, maybe_spectral

POOLING = ("sum", "max", "sum_max")
NORMS = ("none", "group", "group_frame")


@keras.saving.register_keras_serializable(PACKAGE)
class VideoDiscriminator(keras.Model):
    """Projection discriminator over a whole clip, plus an optional frame head.

    Inputs: `video` float [B, T, H, W, 3] in [-1, 1], `text_embedding` [B, D].
    Output: float32 logits [B, heads]: column 0 scores the clip (3D convs,
    motion), column 1 (when `frame_frames > 0`) averages a 2D per-frame
    discriminator over `frame_frames` frames sampled from the clip (sharp
    shapes, DVD-GAN/MoCoGAN style). With `video_downsample` = k > 1 the
    video head sees the clip average-pooled k x k in space (DVD-GAN's temporal
    discriminator): motion at 1/k^2 of the 3D-conv cost, detail left to the
    frame head. `frame_stem` = n > 0 opens the frame head with a stride-1 3x3
    conv of width n at full resolution, so corners are seen before the first
    stride-2 layer. `frame_base_width` = n > 0 sets the frame trunk's first width
    (doubled per layer up to `max_width`; 0: `base_width`, as the clip trunk):
    the frame head is where shapes are judged, at a fraction of the clip
    trunk's cost per width. `word_classes` = V > 0 adds a word classifier (Dense to V
    logits) on each head's pooled features, read by `word_logits`: which of
    the V vocabulary words the clip's caption holds (an AC-GAN-style
    auxiliary task over caption words). `pooling` reduces each head's last
    feature map over its positions: "sum" (BigGAN; keeps the scale of
    evidence), "max" (a small object's evidence undiluted by the background)
    or "sum_max" (both, concatenated: twice the pooled width). `norm="group"`
    puts a per-sample group norm (gcd(4, width) groups) after every stride-2
    conv of both trunks (batch-independent: a clip's score does not depend on
    its batch), `norm="group_frame"` in the frame trunk only. Each head is
    conditioned by projection (Miyato & Koyama 2018): logit = w.h + <h, V text>,
    so a real clip with a wrong caption can be scored as fake.
    """

    def __init__(self, frames: int = 16, size: int = 32, text_dim: int = 128,
                 base_width: int = 32, max_width: int = 256, spectral_norm: bool = False,
                 frame_frames: int = 0, video_downsample: int = 1, frame_stem: int = 0,
                 word_classes: int = 0, pooling: str = "sum", norm: str = "none",
                 frame_base_width: int = 0, sampler_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.frames, self.size, self.text_dim = frames, size, text_dim
        self.base_width, self.max_width = base_width, max_width
        self.spectral_norm, self.frame_frames = spectral_norm, frame_frames
        if frame_frames < 0 or frame_frames > frames:
            raise ValueError(f"frame_frames must be in [0, frames={frames}], got {frame_frames}")
        if size < 8:
            raise ValueError(f"VideoDiscriminator needs frames of at least 8x8 pixels "
                             f"(one stride-2 conv before the 4x4 head), got size={size}")
        if video_downsample < 1 or (video_downsample > 1 and (
                size % video_downsample or size // video_downsample < 8)):
            raise ValueError(f"video_downsample must divide size={size} and leave >= 8 pixels, "
                             f"got {video_downsample}")
        self.video_downsample = video_downsample
        if frame_stem < 0 or (frame_stem and not frame_frames):
            raise ValueError(f"frame_stem must be >= 0 and needs frame_frames > 0, got "
                             f"frame_stem={frame_stem}, frame_frames={frame_frames}")
        self.frame_stem = frame_stem
        if frame_base_width < 0:
            raise ValueError(
                f"frame_base_width must be >= 0 (0: base_width), got {frame_base_width}")
        self.frame_base_width = frame_base_width
        if word_classes < 0:
            raise ValueError(f"word_classes must be >= 0, got {word_classes}")
        self.word_classes = word_classes
        if pooling not in POOLING:
            raise ValueError(f"pooling={pooling!r}; valid: {', '.join(POOLING)}")
        self.pooling = pooling
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}; valid: {', '.join(NORMS)}")
        self.norm = norm

        # The frame head's random offsets while training (the trainer passes train.seed).
        self.sampler_seed = sampler_seed
        self.seed_generator = keras.random.SeedGenerator(sampler_seed, name="frame_sampler")

        def stack(conv, rank_time: bool, prefix: str, size: int, width: int):
            layers, t, s = [], frames, size
            while s > 4:
                # 3x3(x3) kernels, stride 2 (time too while frames remain).
                strides = (2 if t > 1 else 1, 2, 2) if rank_time else (2, 2)
                k = (3, 3, 3) if rank_time else (3, 3)
                layers.append(maybe_spectral(conv(width, k, strides, padding="same",
                                                  name=f"{prefix}{len(layers)}"), spectral_norm))
                t = t // strides[0] if rank_time else t
                s, width = s // 2, min(max_width, width * 2)
            return layers

        # Layers are attributes, not list items: tf.train.Checkpoint does not see
        # layers held in Keras-tracked lists.
        for i, layer in enumerate(stack(keras.layers.Conv3D, True, "v",
                                        size // video_downsample, base_width)):
            setattr(self, f"v{i}", layer)
            self._add_norm(f"v_norm{i}", layer, frame_trunk=False)
        self.video_width = self._out_width(len(self.video_convs), base_width)
        # Heads compute in float32 under mixed precision (logits feed the losses).
        self.video_head = maybe_spectral(
            keras.layers.Dense(1, name="v_head", dtype="float32"), spectral_norm)
        self.video_embed = maybe_spectral(
            keras.layers.Dense(self.video_width, use_bias=False, name="v_proj", dtype="float32"),
            spectral_norm)
        if frame_frames:
            if frame_stem:
                # A stride-1 conv at full resolution: edges and corners are seen before
                # the first stride-2 layer halves the frame.
                self.f_stem = maybe_spectral(keras.layers.Conv2D(
                    frame_stem, 3, padding="same", name="f_stem"), spectral_norm)
            first = frame_base_width or base_width
            for i, layer in enumerate(stack(keras.layers.Conv2D, False, "f", size, first)):
                setattr(self, f"f{i}", layer)
                self._add_norm(f"f_norm{i}", layer, frame_trunk=True)
            self.frame_width = self._out_width(len(self.frame_convs), first)
            self.frame_head = maybe_spectral(
                keras.layers.Dense(1, name="f_head", dtype="float32"), spectral_norm)
            self.frame_embed = maybe_spectral(
                keras.layers.Dense(self.frame_width, use_bias=False, name="f_proj",
                                   dtype="float32"),
                spectral_norm)
        if word_classes:
            self.v_words = keras.layers.Dense(word_classes, name="v_words", dtype="float32")
            if frame_frames:
                self.f_words = keras.layers.Dense(word_classes, name="f_words", dtype="float32")

    def _add_norm(self, name: str, conv: keras.layers.Layer, frame_trunk: bool) -> None:
        if self.norm == "group" or (self.norm == "group_frame" and frame_trunk):
            filters = getattr(conv, "layer", conv).filters
            setattr(self, name, GroupNormalization(
                math.gcd(4, filters), name=name, dtype=self.dtype_policy))

    def _act(self, x, name: str):
        """The norm named `name` (if `_add_norm` made one), then leaky ReLU."""
        if (norm := getattr(self, name, None)) is not None:
            x = norm(x)
        return ops.leaky_relu(x, 0.2)

    def _convs(self, prefix: str) -> list[keras.layers.Layer]:
        out = []
        while hasattr(self, f"{prefix}{len(out)}"):
            out.append(getattr(self, f"{prefix}{len(out)}"))
        return out

    @property
    def video_convs(self) -> list[keras.layers.Layer]:
        return self._convs("v")

    @property
    def frame_convs(self) -> list[keras.layers.Layer]:
        return self._convs("f") if self.frame_frames else []

    def _out_width(self, n_layers: int, first: int) -> int:
        """Width of the pooled features after `n_layers` convs, the first `first` wide."""
        width = min(self.max_width, first * 2 ** (n_layers - 1))
        return 2 * width if self.pooling == "sum_max" else width

    def _pool(self, x, axes):
        pooled = []
        if self.pooling in ("sum", "sum_max"):
            pooled.append(ops.sum(x, axis=axes))
        if self.pooling in ("max", "sum_max"):
            pooled.append(ops.max(x, axis=axes))
        return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)

    @property
    def heads(self) -> int:
        return 2 if self.frame_frames else 1

    def build(self, video_shape=None, text_embedding_shape=None):
        t, s, c = self.frames, self.size // self.video_downsample, 3
        for i, layer in enumerate(self.video_convs):
            layer.build((None, t, s, s, c))
            conv = getattr(layer, "layer", layer)
            t, s, c = t // conv.strides[0], s // 2, conv.filters
            if (norm := getattr(self, f"v_norm{i}", None)) is not None:
                norm.build((None, t, s, s, c))
        self.video_head.build((None, self.video_width))
        self.video_embed.build((None, self.text_dim))
        if self.word_classes:
            self.v_words.build((None, self.video_width))
        if self.frame_frames:
            s, c = self.size, 3
            if self.frame_stem:
                self.f_stem.build((None, s, s, c))
                c = self.frame_stem
            for i, layer in enumerate(self.frame_convs):
                layer.build((None, s, s, c))
                s, c = s // 2, getattr(layer, "layer", layer).filters
                if (norm := getattr(self, f"f_norm{i}", None)) is not None:
                    norm.build((None, s, s, c))
            self.frame_head.build((None, self.frame_width))
            self.frame_embed.build((None, self.text_dim))
            if self.word_classes:
                self.f_words.build((None, self.frame_width))
        self.built = True

    def _project(self, h, text, head, embed):
        h = ops.cast(h, "float32")
        return ops.cast(head(h), "float32") + ops.sum(
            h * ops.cast(embed(ops.cast(text, h.dtype)), "float32"), axis=-1, keepdims=True)

    def call(self, video, text_embedding, training=None, return_features=False):
        """Logits [B, heads]; with `return_features`, also the pooled features
        [heads][B, width] (the frame head's averaged over its frames)."""
        x = ops.cast(video, self.compute_dtype)
        if self.video_downsample > 1:
            k = self.video_downsample
            x = ops.average_pool(x, (1, k, k), (1, k, k), padding="valid")
        for i, layer in enumerate(self.video_convs):
            x = self._act(layer(x, training=training), f"v_norm{i}")
        features = [self._pool(x, (1, 2, 3))]
        if self.frame_frames:
            # Evenly spaced frames; the offset is random while training so every
            # frame is seen, fixed otherwise (deterministic scores).
            stride = self.frames // self.frame_frames
            offset = (keras.random.randint((), 0, stride, seed=self.seed_generator) if training
                      else ops.convert_to_tensor(0))
            idx = offset + ops.arange(self.frame_frames) * stride
            frames = ops.take(ops.cast(video, self.compute_dtype), idx, axis=1)
            f = ops.reshape(frames, [-1, self.size, self.size, 3])
            if self.frame_stem:
                f = ops.leaky_relu(self.f_stem(f, training=training), 0.2)
            for i, layer in enumerate(self.frame_convs):
                f = self._act(layer(f, training=training), f"f_norm{i}")
            hf = self._pool(f, (1, 2))
            # The frame head's logit is linear in the features, so scoring the
            # frames' mean features is the mean of the frames' logits.
            features.append(ops.mean(ops.reshape(
                hf, [-1, self.frame_frames, hf.shape[-1]]), axis=1))
        logits = self.score(features, text_embedding)
        return (logits, features) if return_features else logits

    def score(self, features, text_embedding):
        """Logits float32 [B, heads] of pooled `features` (from `call(...,
        return_features=True)`) against `text_embedding` [B, D].

        Scores clips already seen under other captions without another pass
        through the conv trunks, which do not see the text; `call` ends with it.
        """
        heads = [(self.video_head, self.video_embed)]
        if self.frame_frames:
            heads.append((self.frame_head, self.frame_embed))
        if len(features) != len(heads):
            raise ValueError(f"expected features of {len(heads)} heads, got {len(features)}")
        return ops.concatenate([self._project(h, text_embedding, head, embed)
                                for h, (head, embed) in zip(features, heads)], axis=-1)

    def similarity(self, features, text_embedding):
        """Cosine similarity of every clip with every caption, per head.

        `features` from `call(..., return_features=True)`, `text_embedding`
        [N, D] -> float32 [heads, B, N], through each head's projection
        matrix V (the one in its logit <h, V text>), so the contrastive loss
        and the projection logit train the same caption space.
        """
        embeds = [self.video_embed] + ([self.frame_embed] if self.frame_frames else [])
        out = []
        for h, embed in zip(features, embeds):
            h = ops.normalize(ops.cast(h, "float32"), axis=-1)
            e = ops.normalize(ops.cast(embed(ops.cast(text_embedding, "float32")), "float32"),
                              axis=-1)
            out.append(ops.matmul(h, ops.transpose(e)))
        return ops.stack(out)

    def word_logits(self, features):
        """Word-classifier logits float32 [heads, B, word_classes] from the pooled
        `features` of `call(..., return_features=True)`."""
        if not self.word_classes:
            raise ValueError("this discriminator has no word head (word_classes=0)")
        heads = [self.v_words] + ([self.f_words] if self.frame_frames else [])
        return ops.stack([ops.cast(head(ops.cast(h, "float32")), "float32")
                          for h, head in zip(features, heads)])

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "size": self.size,
                "text_dim": self.text_dim, "base_width": self.base_width,
                "max_width": self.max_width, "spectral_norm": self.spectral_norm,
                "frame_frames": self.frame_frames, "video_downsample": self.video_downsample,
                "frame_stem": self.frame_stem, "word_classes": self.word_classes,
                "frame_base_width": self.frame_base_width, "sampler_seed": self.sampler_seed,
                "pooling": self.pooling, "norm": self.norm}
