"""ListOps generated here, after LRA's generator (lra_benchmarks/data/listops.py).

A node below max_depth is an operator with probability 0.25, else a digit; an operator takes
2..max_args arguments (uniform) and recurses. Operators MIN, MAX, MED (integer part of the
median), SM (sum mod 10). Length counts a digit 1 and an operator 2 plus its arguments; trees
are accepted when min_len < length < max_len and kept unique. LRA's Source strings also carry
the '(' ')' of its binary-pair representation; they hold no information and are dropped here, as
most PyTorch LRA pipelines do, so a sequence is exactly `length` tokens long.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

VALUE_P = 0.25
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
PAD, CLS = 0, 1
VOCAB = ("<pad>", "<cls>", *[str(d) for d in range(10)], *OPERATORS, "]")
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}


@dataclass
class Tree:
    op: str
    args: list  # Tree | int


class TooLong(Exception):
    """A tree grew past the length limit: it would be rejected, so stop drawing it."""


def generate_tree(
    rng: random.Random, depth: int, max_depth: int, max_args: int, limit: float = float("inf")
) -> tuple[Tree | int, int]:
    """A random tree and its length; the root is called with depth 1, as LRA. Drawing stops (TooLong)
    once the length reaches `limit`: the tree would be rejected anyway, and every draw is independent,
    so the accepted trees keep LRA's distribution."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        return rng.randrange(10), 1
    length, args = 2, []
    for _ in range(rng.randint(2, max_args)):
        sub, sub_len = generate_tree(rng, depth + 1, max_depth, max_args, limit - length)
        args.append(sub)
        length += sub_len
        if length >= limit:
            raise TooLong
    return Tree(rng.choice(OPERATORS), args), length


def evaluate(t: Tree | int) -> int:
    if isinstance(t, int):
        return t
    vals = [evaluate(a) for a in t.args]
    if t.op == "[MIN":
        return min(vals)
    if t.op == "[MAX":
        return max(vals)
    if t.op == "[MED":
        return int(statistics.median(vals))
    return sum(vals) % 10


def tokens(t: Tree | int) -> list[str]:
    if isinstance(t, int):
        return [str(t)]
    out = [t.op]
    for a in t.args:
        out += tokens(a)
    return out + ["]"]


def generate(n: int, min_len: int, max_len: int, max_depth: int, max_args: int, seed: int) -> list[tuple[str, int]]:
    """n unique (source, target) pairs with min_len < length < max_len, in generation order."""
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    tries = 0
    while len(seen) < n:
        tries += 1
        if tries > 10000 * n:
            raise RuntimeError(f"ListOps: could not find {n} unique trees with {min_len} < length < {max_len}")
        try:
            tree, length = generate_tree(rng, 1, max_depth, max_args, max_len)
        except TooLong:
            continue
        if min_len < length < max_len:
            src = " ".join(tokens(tree))
            seen.setdefault(src, evaluate(tree))
    return list(seen.items())


def encode(source: str, max_len: int) -> list[int]:
    """[CLS] + token ids, padded with PAD to max_len; '(' and ')' are dropped (see module doc)."""
    ids = [CLS] + [TOKEN_ID[t] for t in source.split() if t not in ("(", ")")]
    if len(ids) > max_len:
        raise ValueError(f"ListOps sequence of {len(ids)} tokens (with CLS) exceeds max_len {max_len}")
    return ids + [PAD] * (max_len - len(ids))
