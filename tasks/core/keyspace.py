"""Where to cut a key range: keys mapped to integers, and how many keys lie between two.

Used by the parallel listing (:mod:`tasks.core.listing`) to place the start of a new range a
number of keys ahead of a range being listed. Only speed depends on it: a cut that lands
badly makes a range longer or shorter, never loses or repeats a key.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

__all__ = ["Density", "KeySpace"]

#: Positions after the common prefix that interpolation looks at.
DIGITS = 12
#: Characters of the common prefix counted as digits too.
SLACK = 3


def _trimmed(keys: list[str]) -> list[str]:
    """A page's keys less its outer tenth at each end: a few keys far from the rest at a
    page's edge (a plate's images before 20,000 tiles) must not stand for the whole page,
    in the density, the common prefix or the kinds of character a position holds."""
    trim = len(keys) // 10
    return keys[trim : len(keys) - trim]


def _inner(keys: list[str]) -> tuple[str, str, int]:
    """A page's first and last key less its outer tenths, and the keys from one to the
    other."""
    inner = _trimmed(keys)
    return inner[0], inner[-1], len(inner)


def _kind(c: str) -> str:
    """Digit, letter or other: the kinds of character a key's position holds."""
    return "d" if c.isdigit() else "a" if c.isalpha() else "o"


class KeySpace:
    """Maps keys to integers and back, for cutting a key range: each of the first ``DIGITS``
    characters after the keys' common prefix is a digit, its rank in the alphabet seen so far
    (a character not seen counts as the one below it, a key that has ended as the lowest).
    Order-keeping (never reversing), and with no digit kept for keys that end, which few do:
    such a digit would be a gap in every place, where the keys' density is lower than the
    density the cuts are placed by. Only used to place cuts, so an imperfect map costs
    speed, never keys."""

    def __init__(self, prefix: str, first: str) -> None:
        self.prefix, self.common = prefix, first
        self.base = first
        self.fresh = True  # the common prefix is taken from the first page learned
        self.alphabet: list[str] = []
        self.kinds: dict[int, set[str]] = {}  # kinds of character at a key's positions

    def learn(self, keys: list[str]) -> None:
        """Narrow the common prefix and widen the alphabet with a page's keys. The digits
        start a few characters before the common prefix ends: keys counted in a page
        (``x/000000`` to ``x/000999``) go on past it (``x/001000``)."""
        if not keys:
            return
        # less a tenth at each end, as the density takes pages: a plate's few images before
        # its tiles kept the common prefix at ``Images/``, and the digits did not reach the
        # tiles' counter (``es/tiles/t00``: one value for 10,000 tiles), so the plate was
        # listed page by page
        edges = _inner(keys)[:2]
        if self.fresh:
            self.common, self.fresh = edges[0], False
        for key in edges:
            n = 0
            limit = min(len(self.common), len(key))
            while n < limit and self.common[n] == key[n]:
                n += 1
            self.common = self.common[:n]
        # never back over a ``/`` the keys share: a delimiter is one character for every
        # key, and as a digit it left a value no key has in every place after it (listing a
        # whole bucket of ``data/0000000`` …, cuts a thousand keys off, as slow as serial)
        floor = max(len(self.prefix), self.common.rfind("/") + 1)
        self.base = self.common[: max(floor, len(self.common) - SLACK)]
        seen = set(self.alphabet)
        start, step = len(self.base), max(1, len(keys) // 50)
        for key in [*keys[::step], keys[-1]]:
            seen.update(key[start : start + DIGITS])
        self.alphabet = sorted(seen)
        # kinds from every page learned, less its outer tenths: a plate's few images before
        # its tiles do not speak for the tiles. One page's alone would not do: a page of
        # hashed names shares its first hex digits, which are then of one kind there, and
        # cuts anywhere else were rounded down to that kind
        for key in _trimmed(keys)[::step]:
            for i, c in enumerate(key[start : start + DIGITS], start):
                self.kinds.setdefault(i, set()).add(_kind(c))

    @property
    def radix(self) -> int:
        return max(2, len(self.alphabet))

    def value(self, key: str) -> int:
        """The key as an integer of DIGITS digits in base ``radix``: per character, the
        number of alphabet characters below or at it, less one (0 where the key has ended)."""
        if not key.startswith(self.base):  # outside the keys the digits stand for
            return 0 if key < self.base else self.top - 1
        tail = key[len(self.base) :]
        v = 0
        for i in range(DIGITS):
            digit = max(0, bisect_right(self.alphabet, tail[i]) - 1) if i < len(tail) else 0
            v = v * self.radix + digit
        return v

    def key(self, value: int) -> str:
        """A key at ``value``: the common prefix and the characters the digits stand for,
        without the lowest character at its end (the shortest such key)."""
        if not self.alphabet:
            return self.base
        chars = []
        for _ in range(DIGITS):
            value, digit = divmod(value, self.radix)
            chars.append(self.alphabet[min(digit, len(self.alphabet) - 1)])
        chars.reverse()
        for i, c in enumerate(chars):
            # a character of a kind the latest keys do not have here (a letter where they
            # have digits) lies past every key of the digits before it: such a cut ends its
            # range on a page boundary, and the range pays one more request for no key. The
            # greatest character below it of a kind seen here ends the range short of the
            # boundary instead; a character below every such one is left as it is.
            kinds = self.kinds.get(len(self.base) + i)
            if kinds and _kind(c) not in kinds:
                below = [a for a in self.alphabet if a < c and _kind(a) in kinds]
                if below:
                    chars[i:] = [below[-1]]
                break
        return self.base + "".join(chars).rstrip(self.alphabet[0])

    @property
    def top(self) -> int:
        return self.radix**DIGITS

    @property
    def last(self) -> str:
        """The greatest key the digits can stand for: every key past it maps to it too."""
        return self.key(self.top - 1)


class Density:
    """Keys per unit of a :class:`KeySpace`'s values, from the pages listed last: how many
    keys lie between two keys, and which key lies a number of keys after another."""

    def __init__(self, space: KeySpace) -> None:
        self.space = space
        self.recent: deque[tuple[str, str, int]] = deque(maxlen=16)
        self.added = 0
        self._cached: tuple[tuple, tuple[int, int]] | None = None

    def add(self, first: str, last: str, count: int) -> None:
        """A page (or range) held ``count`` keys from ``first`` to ``last``."""
        if count > 1 and first < last:
            self.recent.append((first, last, count - 1))
            self.added += 1

    def add_page(self, keys: list[str]) -> None:
        """A page of keys, in order, less its first and last tenth: a few keys far from the
        rest at a page's edge (a plate's images before 20,000 tiles) would otherwise stand for
        the whole page, and the density of every page after it would be read as a fraction
        of what it is."""
        self.add(*_inner(keys))

    def _rate(self) -> tuple[int, int]:
        """Value width and keys of the recent pages, computed again only when a page was
        added or the key space learned characters (it is asked for every cut considered)."""
        version = (self.added, self.space.base, len(self.space.alphabet))
        if self._cached is None or self._cached[0] != version:
            v = self.space.value
            width = sum(v(b) - v(a) for a, b, _ in self.recent)
            self._cached = (version, (width, sum(c for _, _, c in self.recent)))
        return self._cached[1]

    def between(self, after: str, upto: str | None) -> float:
        """Keys expected in (after, upto]; infinite to the end of the prefix or unknown."""
        width, count = self._rate()
        if upto is None or width <= 0 or count <= 0:
            return float("inf")
        return max(0.0, (self.space.value(upto) - self.space.value(after)) * count / width)

    def ahead(self, after: str, keys: float, upto: str | None = None) -> str | None:
        """A key about ``keys`` keys after ``after`` and before ``upto`` (with no ``upto``,
        halfway to the end of the key space if that is nearer: keys past every key seen may
        not be there), or None where the density is unknown or the cut would not fall
        strictly between them."""
        width, count = self._rate()
        if width <= 0 or count <= 0:
            return None
        start = self.space.value(after)
        at = start + max(1, int(keys * width / count))
        if upto is None:
            at = min(at, (start + self.space.top) // 2)
        cut = self.space.key(at)
        if cut <= after or (upto is not None and cut >= upto):
            return None
        return cut
