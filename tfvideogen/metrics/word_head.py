"""What a run's discriminator word head reads in clips: a diagnostic beside the judge.

With `model.discriminator.word_head`, G is trained towards what D's word head
says its clips show. So the head's verdict, next to the judge's, says what to
fix: a head that misnames an attribute on *real* clips cannot teach it (D is the
limit; this found the shape-blind D of the eleventh session, README#Quality),
and a head that names it on *generated* clips the judge rejects is fooled by G.

The math only; `RunSource.word_logits` (metrics/evaluate.py) runs the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfvideogen.data.registry import own_words


def value_words(attributes: Mapping[str, Sequence[str]],
                vocabulary: Sequence[str]) -> dict[str, list[list[int]]]:
    """{attribute: [per value, the vocabulary indices of its own words]}.

    A value's own words are those no other value of the attribute holds
    (`data.registry.own_words`).
    ValueError if a value has no own word in `vocabulary`.
    """
    index = {w: i for i, w in enumerate(vocabulary)}
    out = {}
    for name, values in attributes.items():
        per_value = []
        for value, own in zip(values, own_words(values)):
            if not own or any(w not in index for w in own):
                raise ValueError(f"{name}={value!r}: its own words {own} are not all in the "
                                 f"word head's vocabulary of {len(vocabulary)} words")
            per_value.append([index[w] for w in own])
        out[name] = per_value
    return out


def verdicts(word_logits, words_of_values: Mapping[str, list[list[int]]]
             ) -> dict[str, np.ndarray]:
    """One head's logits [B, V] -> {attribute: int64 [B] value index}.

    The verdict is the value whose own words have the highest mean logit.
    """
    logits = np.asarray(word_logits, np.float64)
    if logits.ndim != 2:
        raise ValueError(f"word_logits must be [B, V], got shape {logits.shape}")
    return {name: np.stack([logits[:, ids].mean(axis=-1) for ids in per_value],
                           axis=-1).argmax(axis=-1).astype(np.int64)
            for name, per_value in words_of_values.items()}
