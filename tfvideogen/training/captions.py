"""Which captions D is shown, and which of them a clip contradicts (its negatives).

Two modes, any number of replicas (replica context; negatives come from the
GLOBAL batch, as on one device):

- full captions (`negatives(hashes)`): a caption contradicts a clip unless it is
  the clip's own caption string;
- word dropout (`drop_words`, then `negatives(ids, shown_ids)`): D and G see
  captions with random words removed; a shown caption contradicts a clip only if
  it holds a word the clip's full caption lacks (bag-of-words consistency), so
  "the digit is moving up and down" stays a positive for every digit moving up
  and down, and is never used as a wrong caption for one.
"""

from __future__ import annotations

import tensorflow as tf

from tfvideogen.models.text_encoder import PAD_ID, normalize


def caption_keys(captions: tf.Tensor) -> tf.Tensor:
    """tf.string [n] -> int64 [n]: equal strings, equal keys (2**62 buckets).

    Strings cannot be all-gathered across replicas; their hashes can.
    """
    return tf.strings.to_hash_bucket_fast(captions, 2**62)


def global_rows(n) -> tuple[tf.Tensor, tf.Tensor]:
    """(int32 [n] positions of this replica's `n` clips in the global batch, its size).

    Replica context; replicas hold contiguous shares, in replica order.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx.num_replicas_in_sync == 1:
        return tf.range(n), tf.convert_to_tensor(n)
    sizes = ctx.all_gather(tf.reshape(n, [1]), axis=0)
    return tf.reduce_sum(sizes[:ctx.replica_id_in_sync_group]) + tf.range(n), tf.reduce_sum(sizes)


def drop_words(ids: tf.Tensor, rate: float, seed: tf.Tensor, rows: tf.Tensor | None = None,
               total=None) -> tf.Tensor:
    """Word dropout: int ids [n, L] (PAD_ID = padding) -> the same with words removed.

    Each word is removed (set to PAD_ID, positions kept) with probability `rate`;
    a caption that would lose every word keeps all of them. `seed`: int [2],
    stateless, so a resumed run drops the same words as an uninterrupted one.
    `rows`/`total` (optional, see `global_rows`): draw for the global batch and
    take these rows, so N replicas drop the words one device would.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"word dropout rate must be in [0, 1), got {rate}")
    words = tf.not_equal(ids, PAD_ID)
    if rows is None:
        u = tf.random.stateless_uniform(tf.shape(ids), seed)
    else:
        u = tf.gather(tf.random.stateless_uniform([total, tf.shape(ids)[1]], seed), rows)
    keep = words & (u >= rate)
    emptied = ~tf.reduce_any(keep, axis=1, keepdims=True)
    keep = tf.where(emptied, words, keep)
    return tf.where(keep, ids, tf.zeros_like(ids))


def covers(full: tf.Tensor, shown: tf.Tensor) -> tf.Tensor:
    """Every word of `shown` occurs in `full`: int ids [..., L] each (broadcast) -> bool [...].

    Order-blind and set-based: a word-dropped caption is covered by the caption
    it came from, and by any other caption that says at least as much. Pairs:
    `covers(a, b)`; all pairs: `covers(a[:, None], b[None])` -> [n, m].
    """
    same = tf.equal(shown[..., :, None], full[..., None, :])
    return tf.reduce_all(tf.reduce_any(same, axis=-1) | tf.equal(shown, PAD_ID), axis=-1)


def negatives(full: tf.Tensor, shown: tf.Tensor | None = None, rows=None):
    """Mismatch and contrastive masks of this replica's clips (replica context).

    `full`: each clip's caption key, int64 [n] (`caption_keys`) or token ids
    [n, L]; `shown`: the token ids D sees ([n, L], word dropout) or None (D sees
    `full`, compared by equality). Each clip's wrong caption is its predecessor's
    in the global batch (the last replica's last clip precedes the first clip).
    `rows`: `global_rows(n)` if the caller has it already (saves a collective).

    Returns `mismatch_mask` bool [n] (the wrong caption contradicts the clip),
    `mismatch_count` (the global mask's sum / replicas: the divisor that makes
    the replicas' mean loss the global masked mean; None on one replica: the
    local sum), `same_caption` bool [n, N] (caption j of the global batch fits
    clip i: the contrastive positives) and `prev` int32 [n] (the predecessor's
    global index; None on one replica, where it is `roll(shift=1)`).
    """
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync
    # `fits(full, shown)`: elementwise, broadcasting over leading dimensions.
    fits = tf.equal if shown is None else covers
    shown = full if shown is None else shown
    if replicas == 1:
        all_full, all_shown = full, shown
    else:
        all_full, all_shown = ctx.all_gather(full, axis=0), ctx.all_gather(shown, axis=0)
    # Clip i of the global batch against its predecessor's shown caption.
    global_mask = ~fits(all_full, tf.roll(all_shown, shift=1, axis=0))
    same_caption = fits(full[:, None], all_shown[None])
    if replicas == 1:
        return global_mask, None, same_caption, None
    own, total = rows if rows is not None else global_rows(tf.shape(full)[0])
    count = tf.reduce_sum(tf.cast(global_mask, tf.float32)) / replicas
    return tf.gather(global_mask, own), count, same_caption, (own - 1) % total


def word_table(vocabulary) -> tf.lookup.StaticHashTable:
    """word -> its index in `vocabulary` (int64), -1 for any other word."""
    words = tf.constant(list(vocabulary), tf.string)
    index = tf.range(tf.size(words, tf.int64), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(words, index),
                                     default_value=-1)


def word_targets(captions: tf.Tensor, table: tf.lookup.StaticHashTable, size: int) -> tf.Tensor:
    """tf.string [n] -> float32 [n, size] multi-hot: which vocabulary words each
    caption holds (normalised as the built-in encoder does; other words ignored)."""
    words = tf.strings.split(normalize(captions))
    ids = tf.ragged.map_flat_values(table.lookup, words).to_tensor(default_value=-1)
    # A sum, not a max: a max over zero words (all captions empty) is -inf.
    return tf.minimum(tf.reduce_sum(tf.one_hot(ids, size, dtype=tf.float32), axis=1), 1.0)
