"""Order protocols: (behaviors, framing pair, seed, batch size) -> an execution schedule.

The schedule is the experiment: the exact order and batching in which an engine sees
the requests. Every random choice is derived from ``seed`` and the behavior id through
a cryptographic hash, so a behavior's order does not depend on which other behaviors
were selected and is identical on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Sequence

from .datasets import Behavior
from .errors import ConfigError
from .framings import FramingPair, Prompt

FREE_FIRST, PAID_FIRST = "free-first", "paid-first"


@dataclass(frozen=True)
class Request:
    """One generation request, as an engine receives it.

    ``position`` is 0 or 1 within the behavior's pair of requests; ``slot`` says whether
    the framing is the pair's free (reference) or paid (compared) framing. Engines must
    not read ``slot`` or ``framing_id``: they see ``prompt`` only, plus ``behavior_id``
    and ``semantic_category`` as request metadata (the sim uses them as a real model
    uses the content of the request).
    """

    index: int
    behavior_id: str
    framing_id: str
    slot: str
    position: int
    batch: int
    prompt: Prompt
    semantic_category: str = ""


@dataclass(frozen=True)
class Schedule:
    protocol: str
    seed: int
    batch_size: int
    pair_id: str
    requests: tuple[Request, ...]

    def __len__(self) -> int:
        return len(self.requests)

    def batches(self) -> list[tuple[Request, ...]]:
        """Consecutive slices of ``batch_size`` requests: what one engine call receives."""
        out: list[list[Request]] = []
        for request in self.requests:
            if not out or out[-1][-1].batch != request.batch:
                out.append([])
            out[-1].append(request)
        return [tuple(batch) for batch in out]

    def sequences(self) -> dict[str, str]:
        """behavior id -> FREE_FIRST or PAID_FIRST, from the actual execution order."""
        first: dict[str, str] = {}
        for request in self.requests:
            first.setdefault(request.behavior_id, FREE_FIRST if request.slot == "free" else PAID_FIRST)
        return first

    def sha256(self) -> str:
        """Identity of the schedule: order, batching, framings and the exact prompts.
        Computed once per schedule (planning, execution and the summary all ask)."""
        known = self.__dict__.get("_sha256")
        if known is None:
            digest = hashlib.sha256()
            for r in self.requests:
                digest.update(json.dumps([r.index, r.behavior_id, r.framing_id, r.slot, r.position, r.batch,
                                          r.prompt.format, r.prompt.flat()], ensure_ascii=False).encode())
            known = digest.hexdigest()
            object.__setattr__(self, "_sha256", known)  # frozen: a memo, not a field
        return known


def unit_hash(seed: int, *keys: str) -> float:
    """A uniform number in [0, 1) from a seed and keys; the same on every machine."""
    payload = json.dumps([int(seed), *keys], ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big") / 2.0**64


# ---------------------------------------------------------------- order rules
# Each rule returns, per behavior, True when the free framing goes first; "blocked"
# instead groups all free requests before all paid ones.

OrderRule = Callable[[Sequence[Behavior], int], list[bool]]
PROTOCOLS: dict[str, OrderRule] = {}
DESCRIPTIONS: dict[str, str] = {}


def protocol(name: str, description: str):
    def register(rule: OrderRule) -> OrderRule:
        PROTOCOLS[name] = rule
        DESCRIPTIONS[name] = description
        return rule
    return register


@protocol("fixed", "free then paid for every behavior (the study's pilot)")
def _fixed(behaviors, seed):
    return [True] * len(behaviors)


@protocol("reversed", "paid then free for every behavior")
def _reversed(behaviors, seed):
    return [False] * len(behaviors)


@protocol("randomized", "independent Bernoulli(0.5) order per behavior, seeded (the study's replication)")
def _randomized(behaviors, seed):
    return [unit_hash(seed, "order", b.behavior_id) < 0.5 for b in behaviors]


@protocol("balanced", "exactly half the behaviors free-first, chosen by seeded permutation")
def _balanced(behaviors, seed):
    ranked = sorted(range(len(behaviors)), key=lambda i: unit_hash(seed, "balance", behaviors[i].behavior_id))
    free_first = [False] * len(behaviors)
    for i in ranked[: len(behaviors) // 2]:
        free_first[i] = True
    if len(behaviors) % 2:  # the odd one out gets a fair coin
        odd = ranked[-1]
        free_first[odd] = unit_hash(seed, "balance-odd", behaviors[odd].behavior_id) < 0.5
    return free_first


@protocol("blocked", "all free requests first, then all paid requests")
def _blocked(behaviors, seed):
    return [True] * len(behaviors)


def build_schedule(
    behaviors: Sequence[Behavior],
    pair: FramingPair,
    protocol_name: str,
    seed: int,
    batch_size: int,
) -> Schedule:
    """The ordered requests an engine receives, batched into slices of ``batch_size``."""
    if protocol_name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol_name!r}; choose from {', '.join(PROTOCOLS)}",
                          option="--protocol")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}", option="--batch-size")
    free_first = PROTOCOLS[protocol_name](behaviors, seed)
    slots: list[tuple[Behavior, str, int]] = []
    if protocol_name == "blocked":
        slots = [(b, "free", 0) for b in behaviors] + [(b, "paid", 1) for b in behaviors]
    else:
        for behavior, first_is_free in zip(behaviors, free_first):
            order = ("free", "paid") if first_is_free else ("paid", "free")
            slots += [(behavior, order[0], 0), (behavior, order[1], 1)]
    requests = []
    for index, (behavior, slot, position) in enumerate(slots):
        framing = pair.free if slot == "free" else pair.paid
        requests.append(Request(index, behavior.behavior_id, framing.id, slot, position,
                                index // batch_size, framing.render(behavior), behavior.semantic_category))
    return Schedule(protocol_name, seed, batch_size, pair.id, tuple(requests))
