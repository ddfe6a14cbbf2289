"""Which behaviour each capture block runs, and which split its requests belong to.

Blocks alternate normal and novel behaviour (N, connection, N, cpu, ...) so that slow drift of the
machine spreads over every split instead of separating them; sequential captures gave a
normal-vs-normal AUROC of 0.72 on a 2-core VM (trace_collection.md section 9). Normal blocks go to
train / valid_id / test_id in a 2:1:1 cycle (train, valid_id, train, test_id), so valid_id and test_id
come from different blocks than train and from each other, and each valid_id block has a test_id block
two normal blocks later. With 1,000-request blocks (about 7 s each) the load of other processes on a
shared 2-core machine changes over tens of seconds; the 4:1:1 cycle used before sampled valid_id and
test_id every 80 s, too rarely to average that out (3-gram ID-vs-ID AUROC 0.639 on a 4-round
collection; the same blocks relabelled 2:1:1 gave 0.449). A novelty's blocks alternate valid_ood /
test_ood by round.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.traces.options import check

NORMAL_CYCLE = ("train", "valid_id", "train", "test_id")
MIN_NORMAL_PER_ROUND = 3


@dataclass(frozen=True)
class Block:
    index: int
    behaviour: str
    split: str
    round: int

    @property
    def id(self) -> str:
        return f"{self.index:03d}-{self.behaviour}"


def schedule(behaviours: list[str], rounds: int) -> list[Block]:
    """The ordered blocks of a collection: each round interleaves normal blocks with each novelty."""
    check("rounds", rounds)
    novelties = [b for b in behaviours if b != "normal"]
    blocks: list[Block] = []
    normal = 0
    for r in range(rounds):
        for i in range(max(len(novelties), MIN_NORMAL_PER_ROUND)):
            blocks.append(Block(len(blocks), "normal", NORMAL_CYCLE[normal % len(NORMAL_CYCLE)], r))
            normal += 1
            if i < len(novelties):
                split = f"{'valid' if r % 2 == 0 else 'test'}_ood_{novelties[i]}"
                blocks.append(Block(len(blocks), novelties[i], split, r))
    return blocks


def splits_of(blocks: list[Block]) -> list[str]:
    """Split names in the paper's order: train, valid_id, test_id, then valid/test per novelty."""
    names = list(dict.fromkeys(b.split for b in blocks))
    rank = {"train": 0, "valid_id": 1, "test_id": 2}
    return sorted(names, key=lambda s: (rank.get(s, 3), s.split("_ood_")[-1], not s.startswith("valid")))
