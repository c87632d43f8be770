"""Registry of datasets: built-in procedural ones and `prefix:argument` readers
(`tfrecord:<glob>`, `videos:<dir|glob>`, `moving_mnist:<path>`)."""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence

import tensorflow as tf

_BUILTIN: dict[str, Callable[..., BuiltinDataset]] = {}
# `prefix` of `prefix:argument` specs -> (factory(argument, **options), usage).
_READERS: dict[str, tuple[Callable[..., BuiltinDataset], str]] = {}


def caption_words(caption: str) -> list[str]:
    """The words the built-in text encoder sees (its `normalize`, in Python)."""
    return re.sub(r"[^a-z0-9' ]+", " ", caption.lower()).split()


def own_words(values: Sequence[str]) -> list[list[str]]:
    """Per value of one attribute, its own words: those no other value holds,
    sorted ("left", "right" for the motion "left and right"; "and" tells nothing)."""
    words = [set(caption_words(str(v))) for v in values]
    return [sorted(w - set().union(*(o for j, o in enumerate(words) if j != i)))
            for i, w in enumerate(words)]


class BuiltinDataset(abc.ABC):
    """A procedural dataset: element i is a pure function of (seed, split, i).

    Elements are `{"video": float32 [T,H,W,3] in [-1,1], "caption": tf.string []}`.
    Because elements are indexed, a resumed run continues from the exact
    position it stopped at (`start`), with no shuffle state to save.
    """

    name: str = ""
    splits: tuple[str, ...] = ("train", "validation", "heldout")
    # Attribute name -> the values it takes; captions are parsed into these
    # (used by caption-accuracy metrics and the sample caption sets).
    attributes: dict[str, tuple[str, ...]] = {}

    @abc.abstractmethod
    def make(self, split: str, frames: int, height: int, width: int, seed: int,
             num_examples: int | None, start: int) -> tf.data.Dataset:
        """The element pipeline (unbatched)."""

    @abc.abstractmethod
    def captions(self, split: str) -> list[str]:
        """Every distinct caption the split can produce, sorted."""

    @abc.abstractmethod
    def parse_caption(self, caption: str) -> dict[str, str]:
        """Caption -> {attribute: value}; ValueError if it is not of the grammar."""

    def vocabulary(self) -> list[str]:
        """Every word any split's captions use, sorted (for the built-in encoder)."""
        words = {w for split in self.splits for c in self.captions(split) for w in c.split()}
        return sorted(words)

    def attribute_words(self) -> list[str]:
        """The words that say what a clip shows, sorted: those naming an attribute
        value (some value's own words), i.e. the vocabulary minus the grammar's
        words ("a", "is", "moving"). Without attributes (free-form captions): the
        words that some caption lacks (a word in every caption tells nothing)."""
        if self.attributes:
            return sorted({w for values in self.attributes.values()
                           for own in own_words(values) for w in own})
        captions = [set(caption_words(c)) for split in self.splits
                    for c in self.captions(split)]
        return sorted(set().union(*captions) - set.intersection(*captions)) if captions else []

    def sample_captions(self, split: str = "train", count: int = 8) -> list[str]:
        """A fixed, spread-out subset of the split's captions (for sample grids)."""
        captions = self.captions(split)
        step = max(1, len(captions) // count)
        picked = captions[::step][:count]
        return (picked * (count // max(1, len(picked)) + 1))[:count]

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"dataset {self.name!r} has no split {split!r}; valid: "
                             f"{', '.join(self.splits)}")


class FileDataset(BuiltinDataset):
    """A dataset read from files: captions and vocabulary come from the data.

    Subclasses set `_captions` (distinct captions), `_words` (vocabulary) and
    `attributes` (`{"class": captions}` for class-folder data, else `{}`).
    """

    splits = ("train",)
    _captions: list[str] = []
    _words: list[str] = []

    def captions(self, split: str) -> list[str]:
        self.check_split(split)
        return list(self._captions)

    def vocabulary(self) -> list[str]:
        return list(self._words)

    def parse_caption(self, caption: str) -> dict[str, str]:
        """{"class": caption} for class-folder data; {} for free-form captions."""
        if not self.attributes:
            return {}
        if caption not in self.attributes["class"]:
            raise ValueError(f"{self.name}: not one of its class captions: {caption!r}")
        return {"class": caption}


def register(name: str) -> Callable[[Callable[..., BuiltinDataset]], Callable[..., BuiltinDataset]]:
    def wrap(factory: Callable[..., BuiltinDataset]) -> Callable[..., BuiltinDataset]:
        _BUILTIN[name] = factory
        return factory
    return wrap


def register_reader(prefix: str, usage: str
                    ) -> Callable[[Callable[..., BuiltinDataset]], Callable[..., BuiltinDataset]]:
    """Registers `factory(argument, **options)` for specs `prefix:argument`."""
    def wrap(factory: Callable[..., BuiltinDataset]) -> Callable[..., BuiltinDataset]:
        _READERS[prefix] = (factory, usage)
        return factory
    return wrap


def available() -> list[str]:
    """The built-in dataset names."""
    return sorted(_BUILTIN)


def readers() -> dict[str, str]:
    """Reader prefix -> usage, e.g. `tfrecord` -> `tfrecord:<glob ...>`."""
    return {p: usage for p, (_, usage) in sorted(_READERS.items())}


def _choices() -> str:
    return ", ".join(available() + [usage for usage in readers().values()])


def get(name: str, **options) -> BuiltinDataset:
    """The dataset `name`: a built-in name or a `prefix:argument` reader spec.

    `options` configure it (e.g. num_objects); options a dataset does not use
    are ignored, so callers can pass one set for every kind.
    """
    if name in _BUILTIN:
        return _BUILTIN[name](**options)
    prefix, sep, argument = name.partition(":")
    if sep and prefix in _READERS:
        factory, usage = _READERS[prefix]
        if not argument.strip():
            raise ValueError(f"dataset {name!r} needs an argument: {usage}")
        return factory(argument, **options)
    raise ValueError(f"unknown dataset {name!r}; valid: {_choices()}")


def split_seed(seed: int, split: str, splits: Sequence[str]) -> int:
    # Distinct, stable random streams per split (train never sees validation clips).
    return int(seed) * 1009 + 7919 * (1 + list(splits).index(split))
