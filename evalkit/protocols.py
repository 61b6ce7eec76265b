"""Order protocols: (behaviors, framing pair, seed, batch size) -> an execution schedule.

The schedule is the experiment: the exact order and batching in which an engine sees
the requests. Every random choice is derived from ``seed`` and the behavior id through
a cryptographic hash, so a behavior's order does not depend on which other behaviors
were selected and is identical on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


# ---------------------------------------------------------------- order protocols

OrderRule = Callable[[Sequence[Behavior], int], list[bool]]


@dataclass(frozen=True)
class Layout:
    """Where each request goes: request ``k`` is behavior ``behavior[k]`` (an index into the
    behaviors) in its free framing when ``is_free[k]``; ``free_first[i]`` says whether
    behavior ``i``'s free request comes before its paid one."""

    behavior: tuple[int, ...]
    is_free: tuple[bool, ...]
    free_first: tuple[bool, ...]


@dataclass(frozen=True)
class OrderProtocol:
    """An order protocol. ``rule`` says, per behavior, whether the free framing goes first.
    ``order_varies``: some behaviors run free-first and others paid-first, so an order effect
    is estimable and separable from the framing effect (the ``no order effect`` test runs,
    the summary does not call the gap order-confounded). ``blocked``: all free requests run
    before all paid ones, instead of each behavior's two requests side by side."""

    name: str
    description: str
    rule: OrderRule
    order_varies: bool
    blocked: bool = False

    def layout(self, behaviors: Sequence[Behavior], seed: int) -> Layout:
        free_first = tuple(bool(f) for f in self.rule(behaviors, seed))
        n = len(behaviors)
        if self.blocked:
            return Layout((*range(n), *range(n)), (True,) * n + (False,) * n, free_first)
        behavior = tuple(i for i in range(n) for _ in (0, 1))
        is_free = tuple(f if second == 0 else not f for f in free_first for second in (0, 1))
        return Layout(behavior, is_free, free_first)


PROTOCOLS: dict[str, OrderProtocol] = {}


def protocol(name: str, description: str, *, order_varies: bool, blocked: bool = False
             ) -> Callable[[OrderRule], OrderRule]:
    """Decorator: register an order rule as the protocol ``name``."""
    def register(rule: OrderRule) -> OrderRule:
        PROTOCOLS[name] = OrderProtocol(name, description, rule, order_varies, blocked)
        return rule
    return register


def order_protocol(name: str) -> OrderProtocol:
    """The protocol called ``name``; an unknown name is a ConfigError naming --protocol."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}", option="--protocol")
    return PROTOCOLS[name]


@protocol("fixed", "free then paid for every behavior (the study's pilot)", order_varies=False)
def _fixed(behaviors: Sequence[Behavior], seed: int) -> list[bool]:
    return [True] * len(behaviors)


@protocol("reversed", "paid then free for every behavior", order_varies=False)
def _reversed(behaviors: Sequence[Behavior], seed: int) -> list[bool]:
    return [False] * len(behaviors)


@protocol("randomized", "independent Bernoulli(0.5) order per behavior, seeded (the study's replication)",
          order_varies=True)
def _randomized(behaviors: Sequence[Behavior], seed: int) -> list[bool]:
    return [unit_hash(seed, "order", b.behavior_id) < 0.5 for b in behaviors]


@protocol("balanced", "exactly half the behaviors free-first, chosen by seeded permutation", order_varies=True)
def _balanced(behaviors: Sequence[Behavior], seed: int) -> list[bool]:
    ranked = sorted(range(len(behaviors)), key=lambda i: unit_hash(seed, "balance", behaviors[i].behavior_id))
    free_first = [False] * len(behaviors)
    for i in ranked[: len(behaviors) // 2]:
        free_first[i] = True
    if len(behaviors) % 2:  # the odd one out gets a fair coin
        odd = ranked[-1]
        free_first[odd] = unit_hash(seed, "balance-odd", behaviors[odd].behavior_id) < 0.5
    return free_first


@protocol("blocked", "all free requests first, then all paid requests", order_varies=False, blocked=True)
def _blocked(behaviors: Sequence[Behavior], seed: int) -> list[bool]:
    return [True] * len(behaviors)


def build_schedule(
    behaviors: Sequence[Behavior],
    pair: FramingPair,
    protocol_name: str,
    seed: int,
    batch_size: int,
) -> Schedule:
    """The ordered requests an engine receives, batched into slices of ``batch_size``."""
    layout = order_protocol(protocol_name).layout(behaviors, seed)
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}", option="--batch-size")
    requests = []
    answered: set[int] = set()
    for index, (i, is_free) in enumerate(zip(layout.behavior, layout.is_free)):
        behavior, framing = behaviors[i], (pair.free if is_free else pair.paid)
        position = 1 if i in answered else 0
        answered.add(i)
        requests.append(Request(index, behavior.behavior_id, framing.id, "free" if is_free else "paid", position,
                                index // batch_size, framing.render(behavior), behavior.semantic_category))
    return Schedule(protocol_name, seed, batch_size, pair.id, tuple(requests))
