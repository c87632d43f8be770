"""Networks (text encoders, generator, discriminator) and the task object."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfvideogen.config import GENERATORS as KINDS
from tfvideogen.config import ModelConfig
from tfvideogen.models.discriminator import VideoDiscriminator
from tfvideogen.models.generator import VideoGenerator
from tfvideogen.models.hub_encoder import HubLoadError, HubTextEncoder
from tfvideogen.models.layered import LayeredGenerator
from tfvideogen.models.mocogan import MoCoGenerator
from tfvideogen.models.task import TextToVideo, check_truncation, latents_from_seeds, to_uint8
from tfvideogen.models.text_encoder import TextEncoder

__all__ = ["HubLoadError", "HubTextEncoder", "LayeredGenerator", "MoCoGenerator", "TextEncoder",
           "TextToVideo", "VideoDiscriminator", "VideoGenerator", "build_task",
           "build_text_encoder", "latents_from_seeds", "to_uint8", "check_truncation"]


def build_text_encoder(cfg: ModelConfig, vocabulary: Sequence[str],
                       route_words: Sequence[str] = ()) -> keras.Model:
    """`builtin` -> TextEncoder; anything else is a TF-Hub handle/URL/path -> HubTextEncoder.

    A hub encoder's size comes from the module (`text_encoder.output_dim` is
    the builtin's); loading raises HubLoadError when the handle is unreachable.
    `route_words`: the builtin's fixed head-1 words (`text_encoder.route_words`
    resolved against the dataset; see `training.trainer.build_task`).
    """
    t = cfg.text_encoder
    if t.kind == "builtin":
        if t.preprocessor:
            raise ValueError("model.text_encoder.preprocessor only applies to TF-Hub encoders; "
                             "the builtin encoder tokenises itself")
        return TextEncoder(vocabulary, max_tokens=t.max_tokens, embedding_dim=t.embedding_dim,
                           hidden_dim=t.hidden_dim, output_dim=t.output_dim, pooling=t.pooling,
                           heads=t.heads, route_words=route_words, name="text_encoder")
    return HubTextEncoder(t.kind, preprocessor=t.preprocessor, output_key=t.output_key,
                          trainable=t.trainable, name="text_encoder")


def build_task(cfg: ModelConfig, vocabulary: Sequence[str], frames: int, size: int,
               ema: bool = True, seed: int = 0,
               route_words: Sequence[str] = ()) -> TextToVideo:
    """Builds encoder, G, D (and an EMA copy of G) from the model config; `seed`
    starts D's frame sampler (training runs pass train.seed)."""
    encoder = build_text_encoder(cfg, vocabulary, route_words)
    text_dim = encoder.output_dim
    g, d = cfg.generator, cfg.discriminator

    def make_generator(name):
        if g.kind == "mocogan":
            return MoCoGenerator(frames=frames, size=size, z_dim=g.z_dim, text_dim=text_dim,
                                 motion_dim=g.motion_dim, base_width=g.base_width,
                                 min_width=g.min_width, base_size=g.base_size,
                                 rgb_kernel=g.rgb_kernel, name=name)
        if g.kind == "layered":
            return LayeredGenerator(frames=frames, size=size, z_dim=g.z_dim, text_dim=text_dim,
                                    motion_dim=g.motion_dim, base_width=g.base_width,
                                    min_width=g.min_width, base_size=g.base_size,
                                    rgb_kernel=g.rgb_kernel, name=name)
        if g.kind != "conv3d":
            raise ValueError(f"model.generator.kind={g.kind!r}; valid: {', '.join(KINDS)}")
        return VideoGenerator(frames=frames, size=size, z_dim=g.z_dim, text_dim=text_dim,
                              base_width=g.base_width, min_width=g.min_width,
                              base_frames=g.base_frames, base_size=g.base_size,
                              upsampling=g.upsampling, output_activation=g.output_activation,
                              rgb_kernel=g.rgb_kernel, name=name)

    generator = make_generator("generator")
    ema_generator = make_generator("ema_generator") if ema else None
    discriminator = VideoDiscriminator(frames=frames, size=size, text_dim=text_dim,
                                       base_width=d.base_width, max_width=d.max_width,
                                       spectral_norm=d.spectral_norm,
                                       frame_frames=d.frame_frames,
                                       video_downsample=d.video_downsample,
                                       frame_stem=d.frame_stem,
                                       frame_base_width=d.frame_base_width,
                                       word_classes=len(vocabulary) if d.word_head else 0,
                                       pooling=d.pooling, norm=d.norm, sampler_seed=seed,
                                       name="discriminator")
    task = TextToVideo(encoder, generator, discriminator, ema_generator, name="text_to_video")
    task.build()
    if ema_generator is not None:
        for e, w in zip(ema_generator.weights, generator.weights):
            e.assign(w)
    return task
