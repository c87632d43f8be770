"""GAN losses as pure functions of logits (float32, any shape).

Conventions: `real`/`fake` are discriminator logits; higher means "real and
matching its caption". Every loss returns a scalar mean over all elements
(several heads or frames simply contribute more elements).
"""

from __future__ import annotations

import tensorflow as tf

KINDS = ("hinge", "non_saturating")


def _f32(x) -> tf.Tensor:
    return tf.cast(x, tf.float32)


def _masked_mean(x: tf.Tensor, mask: tf.Tensor | None, count=None) -> tf.Tensor:
    if mask is None:
        return tf.reduce_mean(x)
    # mask [B] broadcast over the logits' trailing axes; empty mask -> 0.
    mask = tf.cast(tf.reshape(mask, [-1] + [1] * (len(x.shape) - 1)), x.dtype)
    mask = tf.broadcast_to(mask, tf.shape(x))
    count = tf.reduce_sum(mask) if count is None else _f32(count) * tf.cast(
        tf.size(x) // tf.shape(x)[0], tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(x * mask), count)


def _mean_over_captioned_rows(per_row: tf.Tensor, words: tf.Tensor) -> tf.Tensor:
    """Mean of `per_row` ([B] or [heads, B]) over rows whose caption holds a known
    word (`words` [..., B, V] multi-hot); 0, not NaN, if none does."""
    valid = tf.broadcast_to(tf.cast(tf.reduce_sum(words, axis=-1) > 0, tf.float32),
                            tf.shape(per_row))
    return tf.math.divide_no_nan(tf.reduce_sum(per_row * valid), tf.reduce_sum(valid))


def hinge_discriminator(real, fake, mismatch=None, mismatch_mask=None,
                        mismatch_weight: float = 0.5, mismatch_count=None) -> tf.Tensor:
    """mean(relu(1 - real)) + (1-w) mean(relu(1 + fake)) + w mean(relu(1 + mismatch)).

    The mismatch mean runs over the clips where `mismatch_mask` [B] is True;
    `mismatch_count` replaces their number as the divisor (see `discriminator_loss`).
    """
    loss_real = tf.reduce_mean(tf.nn.relu(1.0 - _f32(real)))
    loss_fake = tf.reduce_mean(tf.nn.relu(1.0 + _f32(fake)))
    if mismatch is None:
        return loss_real + loss_fake
    loss_mis = _masked_mean(tf.nn.relu(1.0 + _f32(mismatch)), mismatch_mask, mismatch_count)
    return loss_real + (1.0 - mismatch_weight) * loss_fake + mismatch_weight * loss_mis


def hinge_generator(fake) -> tf.Tensor:
    """-mean(fake)."""
    return -tf.reduce_mean(_f32(fake))


def non_saturating_discriminator(real, fake, mismatch=None, mismatch_mask=None,
                                 mismatch_weight: float = 0.5,
                                 mismatch_count=None) -> tf.Tensor:
    """mean(softplus(-real)) + (1-w) mean(softplus(fake)) + w mean(softplus(mismatch))."""
    loss_real = tf.reduce_mean(tf.nn.softplus(-_f32(real)))
    loss_fake = tf.reduce_mean(tf.nn.softplus(_f32(fake)))
    if mismatch is None:
        return loss_real + loss_fake
    loss_mis = _masked_mean(tf.nn.softplus(_f32(mismatch)), mismatch_mask, mismatch_count)
    return loss_real + (1.0 - mismatch_weight) * loss_fake + mismatch_weight * loss_mis


def non_saturating_generator(fake) -> tf.Tensor:
    """mean(softplus(-fake)) = -mean(log sigmoid(fake))."""
    return tf.reduce_mean(tf.nn.softplus(-_f32(fake)))


def discriminator_loss(kind: str, real, fake, mismatch=None, mismatch_mask=None,
                       mismatch_weight: float = 0.5, mismatch_count=None) -> tf.Tensor:
    """`mismatch_count`: divisor of the masked mismatch mean instead of the
    mask's sum. Under tf.distribute, the global count / replicas makes the
    replicas' mean loss the global batch's masked mean, as on one device."""
    fn = {"hinge": hinge_discriminator, "non_saturating": non_saturating_discriminator}
    if kind not in fn:
        raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(KINDS)}")
    return fn[kind](real, fake, mismatch, mismatch_mask, mismatch_weight, mismatch_count)


def generator_loss(kind: str, fake) -> tf.Tensor:
    fn = {"hinge": hinge_generator, "non_saturating": non_saturating_generator}
    if kind not in fn:
        raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(KINDS)}")
    return fn[kind](fake)


def r1_penalty(real_grads, gamma: float) -> tf.Tensor:
    """R1 (Mescheder et al. 2018): gamma/2 * E[ ||d D(x_real) / d x_real||^2 ].

    `real_grads`: gradients of the summed real logits w.r.t. the real inputs
    [B, ...]; the squared norm is taken per sample, then averaged.
    """
    g = _f32(real_grads)
    per_sample = tf.reduce_sum(tf.reshape(g * g, [tf.shape(g)[0], -1]), axis=1)
    return 0.5 * gamma * tf.reduce_mean(per_sample)


def contrastive(similarity, positives, temperature: float = 0.1) -> tf.Tensor:
    """Video-to-caption contrastive loss (XMC-GAN, Zhang et al. 2021), multi-positive.

    `similarity` [B, N] or [heads, B, N]: cosine similarity of clip i (rows) and
    caption j (columns; N = B, or the global batch across replicas); `positives`
    bool [B, N]: caption j is clip i's caption (its own, and wherever two clips
    share a caption). Per row:
    -log(sum_{j pos} exp(s_ij / t) / sum_j exp(s_ij / t)), averaged over rows
    (and heads). It pushes each clip towards its own caption and away from the
    batch's other captions, which the per-pair projection logit only does for
    one wrong caption at a time.
    """
    s = _f32(similarity) / temperature
    pos = tf.cast(positives, tf.bool)
    if len(s.shape) == 3:
        pos = tf.broadcast_to(pos[None], tf.shape(s))
    log_all = tf.reduce_logsumexp(s, axis=-1)
    log_pos = tf.reduce_logsumexp(tf.where(pos, s, tf.fill(tf.shape(s), -1e9)), axis=-1)
    return tf.reduce_mean(log_all - log_pos)


def word_classification(logits, words) -> tf.Tensor:
    """Caption-word classification loss (multi-label softmax), >= 0.

    `logits` [B, V] or [heads, B, V]: a word classifier's scores over the
    vocabulary; `words` [B, V] multi-hot (0/1): the words clip b's caption
    holds. Per row: KL(q || softmax(logits)) with q uniform over the caption's
    words (cross-entropy minus q's entropy, so a perfect classifier scores 0),
    averaged over rows that hold at least one known word (and heads).
    """
    logits = _f32(logits)
    q = _f32(words)
    n = tf.reduce_sum(q, axis=-1)
    q = tf.math.divide_no_nan(q, n[:, None])
    log_p = tf.nn.log_softmax(logits, axis=-1)
    safe_log_q = tf.math.log(tf.where(q > 0, q, tf.ones_like(q)))
    kl = tf.reduce_sum(q * (safe_log_q - log_p), axis=-1)  # [B] or [heads, B]
    return _mean_over_captioned_rows(kl, _f32(words))



def word_detection(logits, words) -> tf.Tensor:
    """Caption-word detection loss (one sigmoid per word), >= 0.

    `logits` [B, V] or [heads, B, V], `words` [B, V] multi-hot, as in
    `word_classification`. Per row: the binary cross-entropies of all V words
    (present or absent), summed, so each word is its own yes/no question at full
    strength: the softmax loss gives a caption's word 1/len(caption) of the mass,
    and a shape word of an 8-word caption a gradient 8x smaller. Averaged over
    rows that hold at least one known word (and heads).
    """
    logits = _f32(logits)
    q = tf.broadcast_to(_f32(words), tf.shape(logits))
    bce = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=q, logits=logits),
                        axis=-1)  # [B] or [heads, B]
    return _mean_over_captioned_rows(bce, q)


def word_rejection(logits, words) -> tf.Tensor:
    """D's caption-word loss on generated clips (Omni-GAN style), >= 0.

    `logits` [B, V] or [heads, B, V] on generated clips, `words` [B, V]
    multi-hot: each clip's caption. Per row: the binary cross-entropies of the
    caption's words with label 0 (softplus of their logits), summed; other words
    are left alone. So each caption word's sigmoid becomes a discriminator of
    its own ("a real circle?"), which G cannot satisfy with a clip that only
    resembles the word to a head trained on real clips. Averaged over rows that
    hold at least one known word (and heads).
    """
    logits = _f32(logits)
    q = tf.broadcast_to(_f32(words), tf.shape(logits))
    per_row = tf.reduce_sum(q * tf.nn.softplus(logits), axis=-1)  # [B] or [heads, B]
    return _mean_over_captioned_rows(per_row, q)


WORD_LOSSES = {"softmax": word_classification, "sigmoid": word_detection}
