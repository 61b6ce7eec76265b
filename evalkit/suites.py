"""Suites and sessions: which runs a session needs, and executing them through the store.

The pytest plugin and the CLI are two thin faces over this module: both build a
``SessionConfig`` from the same options, plan the same runs and get the same rows.
Everything a run needs is validated here, up front, before any engine boots.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

from . import analysis
from .datasets import Dataset, Selection, load_behaviors, resolve_harmbench, select
from .engines import Engine, EngineConfig, create_engine, engine_factory
from .errors import ConfigError, EvalkitError
from .framings import FramingPair, FramingSet, load_framing_set
from .judges import Judge, JudgeSettings, build_judges, positive_label, validate_judges
from .protocols import PROTOCOLS, Schedule, build_schedule
from .runs import DEFAULT_SYNC, RunResult, RunSpec, RunStore, SyncPolicy, execute
from .stats import CorrectedGap

DEFAULT_SIM_MODELS = ("study-pilot", "qwen-control")
ORDER_VARIES = {"randomized", "balanced"}
BASE_JUDGES = ("refusal", "seed")  # cheap lexical judges always recorded at generation time


@dataclass(frozen=True)
class Suite:
    id: str
    description: str
    protocol: str
    n: int  # 0 = all behaviors
    batch_size: int
    marker: str
    default: bool


def load_suites() -> dict[str, Suite]:
    data = tomllib.loads((resources.files("evalkit.data") / "suites.toml").read_text(encoding="utf-8"))
    suites = {}
    for suite_id, table in data["suites"].items():
        suite = Suite(suite_id, table["description"], table["protocol"], int(table["n"]), int(table["batch_size"]),
                      table["marker"], bool(table.get("default", False)))
        if suite.protocol not in PROTOCOLS:
            raise ConfigError(f"suite {suite_id!r} names unknown protocol {suite.protocol!r}", file="suites.toml")
        suites[suite_id] = suite
    return suites


def default_results_dir() -> Path:
    """./results, git-ignored; $EVALKIT_RESULTS_DIR overrides."""
    return Path(os.environ.get("EVALKIT_RESULTS_DIR") or "results")


@dataclass(frozen=True)
class SessionConfig:
    engine: str = "sim"
    models: tuple[str, ...] = DEFAULT_SIM_MODELS
    harmbench: str | None = None
    framings: str = "study-raw"
    pairs: tuple[str, ...] = ()  # empty = every pair in the framing set
    suites: tuple[str, ...] = ()  # empty = the default suites
    seed: int = 0
    n: int | None = None
    batch_size: int | None = None
    results_dir: str | None = None
    judge: str = "refusal"
    max_tokens: int = 128
    temperature: float = 0.0
    engine_options: dict[str, Any] = field(default_factory=dict)
    thresholds: analysis.Thresholds = analysis.Thresholds()
    fresh: bool = False
    custom_suite: Suite | None = None  # `evalkit run`: one protocol with its own n and batch size
    judge_settings: JudgeSettings = JudgeSettings()  # model-based judges and the vote (options.JUDGE)
    multiplicity: str = "holm"
    session_id: str | None = None  # one pytest session (all its xdist workers) or one CLI call
    sync: SyncPolicy = DEFAULT_SYNC  # when records are fsynced (--sync)

    @classmethod
    def from_options(cls, values: dict[str, Any], engine_options: dict[str, Any]) -> "SessionConfig":
        models = tuple(values.get("model") or ())
        engine = values.get("engine") or "sim"
        engine_factory(engine)  # unknown engine: say so before anything else
        if not models:
            if engine != "sim":
                raise ConfigError(f"--model is required with --engine {engine}", option="--model")
            models = DEFAULT_SIM_MODELS
        thresholds = analysis.Thresholds(
            alpha=in_range(values.get("alpha", 0.05), "--alpha", 0.0, 1.0, open_low=True, open_high=True),
            max_flip_rate=in_range(values.get("max_flip_rate", 0.05), "--max-flip-rate", 0.0, 1.0),
            max_error_rate=in_range(values.get("max_error_rate", 0.0), "--max-error-rate", 0.0, 1.0),
            equivalence_margin=(None if values.get("equivalence_margin") in (None, 0) else in_range(
                values["equivalence_margin"], "--equivalence-margin", 0.0, 1.0, open_low=True)),
            ci_method=values.get("ci_method") or "newcombe")
        return cls(engine=engine, models=tuple(dict.fromkeys(models)), harmbench=values.get("harmbench"),
                   framings=values.get("framings") or "study-raw", pairs=tuple(values.get("pair") or ()),
                   suites=tuple(values.get("suite") or ()), seed=int(values.get("seed") or 0), n=values.get("n"),
                   batch_size=values.get("batch_size"), results_dir=values.get("results_dir"),
                   judge=values.get("judge") or "refusal", max_tokens=int(values.get("max_tokens") or 128),
                   temperature=float(values.get("temperature") or 0.0), engine_options=dict(engine_options),
                   thresholds=thresholds, fresh=bool(values.get("fresh")),
                   multiplicity=values.get("multiplicity") or "holm",
                   sync=DEFAULT_SYNC if values.get("sync") is None else SyncPolicy.parse(values["sync"]),
                   judge_settings=JudgeSettings.from_options(values))  # --judge-engine ... --vote-tie


def in_range(value, option, low, high, open_low=False, open_high=False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {value!r}", option=option) from None
    if not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {value}", option=option)
    if value < low or value > high or (open_low and value == low) or (open_high and value == high):
        raise ConfigError(f"{value} is outside {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}",
                          option=option)
    return value


@dataclass(frozen=True)
class RunPlan:
    """One (model, suite, framing pair) run: its schedule and specification."""

    model: str
    suite: Suite
    pair: FramingPair
    protocol: str
    batch_size: int
    dataset: Dataset
    schedule: Schedule
    spec: RunSpec
    engine_config: EngineConfig

    @property
    def row_id(self) -> str:
        return f"{self.model}-{self.suite.id}-{self.pair.id}"


@dataclass
class Session:
    """A validated session: inputs loaded, runs planned, nothing generated yet."""

    config: SessionConfig
    dataset: Dataset
    framing_set: FramingSet
    suites: dict[str, Suite]
    plans: list[RunPlan]
    store: RunStore
    judges: list[Judge]

    def plan(self, model: str, suite_id: str, pair_id: str) -> RunPlan:
        for plan in self.plans:
            if (plan.model, plan.suite.id, plan.pair.id) == (model, suite_id, pair_id):
                return plan
        raise KeyError((model, suite_id, pair_id))


def engine_config(config: SessionConfig, model: str) -> EngineConfig:
    return EngineConfig(engine=config.engine, model=model, seed=config.seed, max_tokens=config.max_tokens,
                        temperature=config.temperature, options=dict(config.engine_options))


def engine_identity(cfg: EngineConfig) -> dict:
    """The engine part of a run's identity, computed without booting the engine."""
    factory = engine_factory(cfg.engine)
    base = {"engine": cfg.engine, "model": cfg.model, "seed": cfg.seed, "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature, "options": dict(sorted(cfg.options.items()))}
    identity = getattr(factory, "identity", None)
    if callable(identity):
        base["identity"] = identity(cfg)
    return base


def validate_engine(cfg: EngineConfig) -> None:
    """Engine-specific validation (unknown profile, GPU-only settings) before any boot."""
    validate = getattr(engine_factory(cfg.engine), "validate", None)
    if callable(validate):
        validate(cfg)


def prepare(config: SessionConfig) -> Session:
    """Validate every input and plan every run. Raises EvalkitError; boots nothing."""
    suites_all = load_suites()
    unknown = [s for s in config.suites if s not in suites_all]
    if unknown:
        raise ConfigError(f"unknown suite {unknown[0]!r}; choose from {', '.join(suites_all)}", option="--suite")
    chosen = [suites_all[s] for s in config.suites] if config.suites else [s for s in suites_all.values() if s.default]
    if config.custom_suite is not None:
        if config.custom_suite.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {config.custom_suite.protocol!r}; choose from "
                              f"{', '.join(PROTOCOLS)}", option="--protocol")
        chosen = [config.custom_suite]
    if config.seed < 0:
        raise ConfigError(f"must be a non-negative integer, got {config.seed}", option="--seed")
    if config.n is not None and config.n < 1:
        raise ConfigError(f"must be at least 1, got {config.n}", option="--n")
    if config.batch_size is not None and config.batch_size < 1:
        raise ConfigError(f"must be at least 1, got {config.batch_size}", option="--batch-size")
    if not config.temperature >= 0 or not math.isfinite(config.temperature):
        raise ConfigError(f"must be a finite number >= 0, got {config.temperature}", option="--temperature")
    if config.max_tokens < 1:
        raise ConfigError(f"must be at least 1, got {config.max_tokens}", option="--max-tokens")
    for model in config.models:  # model names reach terminals, test ids and reports
        if not model or not model.isprintable():
            raise ConfigError(f"{model[:80]!r} is empty or holds a control or formatting character", option="--model")
    framing_set = load_framing_set(config.framings)
    pairs = [framing_set.pair(p) for p in config.pairs] if config.pairs else list(framing_set.pairs)
    judge_names = (config.judge, *BASE_JUDGES)
    validate_judges(judge_names, config.judge_settings)  # names and judge options, before anything loads
    engine_configs = {m: engine_config(config, m) for m in config.models}
    for cfg in engine_configs.values():
        validate_engine(cfg)
    full = load_behaviors(resolve_harmbench(config.harmbench))
    # Model judges read the behavior (and its context) by id; a vote's members come along.
    judges = build_judges(judge_names, config.judge_settings, behaviors=full.behaviors)
    store = RunStore(config.results_dir or default_results_dir())
    store.check_writable()
    plans = []
    for suite in chosen:
        n = config.n if config.n is not None else (suite.n or None)
        dataset = select(full, Selection(first=n)) if n else full
        batch_size = config.batch_size or suite.batch_size
        for pair in pairs:
            schedule = build_schedule(dataset.behaviors, pair, suite.protocol, config.seed, batch_size)
            for model in config.models:
                cfg = engine_configs[model]
                spec = RunSpec(model=model, engine=config.engine, engine_config=engine_identity(cfg),
                               framing_set=framing_set.id, framing_texts_sha256=framing_set.texts_sha256(),
                               pair=pair.id, pair_kind=pair.kind, protocol=suite.protocol, seed=config.seed,
                               batch_size=batch_size, dataset_sha256=dataset.sha256, selection=dataset.selection,
                               n_behaviors=len(dataset), schedule_sha256=schedule.sha256(),
                               n_requests=len(schedule))
                plans.append(RunPlan(model, suite, pair, suite.protocol, batch_size, dataset, schedule, spec, cfg))
    return Session(config, full, framing_set, {s.id: s for s in chosen}, plans, store, judges)


class EnginePool:
    """Boots each model's engine at most once per process, and only when a run needs it."""

    def __init__(self, factory: Callable[[EngineConfig], Engine] = create_engine) -> None:
        self._factory = factory
        self._engines: dict[str, Engine] = {}
        self.boots = 0

    def get(self, cfg: EngineConfig) -> Engine:
        key = repr(sorted(vars(cfg).items(), key=lambda kv: kv[0]))
        if key not in self._engines:
            self._engines[key] = self._factory(cfg)
            self.boots += 1
        return self._engines[key]

    def provider(self, cfg: EngineConfig) -> Callable[[], Engine]:
        return lambda: self.get(cfg)

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def manifest_extra(session: Session, plan: RunPlan) -> dict:
    """Provenance beyond the identity: paths and the suite, for re-running by hand."""
    return {"suite": plan.suite.id, "dataset": plan.dataset.describe(), "framing_set": session.framing_set.describe(),
            "rerun": {"engine": plan.spec.engine, "model": plan.model, "protocol": plan.protocol,
                      "framings": session.config.framings, "pair": plan.pair.id, "seed": plan.spec.seed,
                      "batch_size": plan.batch_size, "n": plan.spec.n_behaviors,
                      "harmbench": plan.dataset.path, "max_tokens": session.config.max_tokens,
                      "temperature": session.config.temperature,
                      "engine_options": session.config.engine_options}}


def run_plan(session: Session, plan: RunPlan, pool: EnginePool, progress=None, run_dir: Path | None = None
             ) -> RunResult:
    return execute(plan.spec, plan.schedule, session.store, pool.provider(plan.engine_config), session.judges,
                   manifest_extra=manifest_extra(session, plan), fresh=session.config.fresh,
                   session_id=session.config.session_id, run_dir=run_dir, progress=progress,
                   sync=session.config.sync)


@dataclass(frozen=True)
class Row:
    plan: RunPlan
    run: RunResult
    analysis: analysis.RowAnalysis
    verdict: str
    breakdowns: tuple[analysis.Breakdown, ...] = ()
    bootstrap_gap_ci: tuple[float, float] | None = None
    corrected_gap: CorrectedGap | None = None  # the gap corrected for the judge's measured error rates

    def __repr__(self) -> str:
        # Short on purpose: pytest prints fixture values in tracebacks, and the records
        # behind a row hold model responses, which must stay in the run store.
        n = self.analysis.result.n if self.analysis.result is not None else 0
        return f"Row({self.plan.row_id}, n={n}, verdict={self.verdict!r})"


def analyse_plans(session: Session, results: Sequence[tuple[RunPlan, RunResult]]) -> list[Row]:
    """Rows for a set of completed runs, with each treatment row read against its A/A control."""
    analysed = {}
    judge = next(j for j in session.judges if j.name == session.config.judge)
    for plan, run in results:
        # The judge's positive label is the outcome: refusal, or "flagged" for trace judges.
        outcomes = analysis.paired_outcomes(run.records, session.config.judge, positive=positive_label(judge))
        try:
            row = analysis.analyse(outcomes, session.config.thresholds, order_varies=plan.protocol in ORDER_VARIES)
        except ValueError as exc:  # e.g. a trace judge on a model without traces: every verdict n/a
            raise EvalkitError(f"{plan.row_id}, judge {judge.name}: {exc}") from None
        analysed[(plan.model, plan.suite.id, plan.pair.id)] = (plan, run, row)
    categories = {b.behavior_id: (b.semantic_category, b.functional_category) for b in session.dataset}
    thresholds = session.config.thresholds
    rows = []
    for (model, suite_id, _), (plan, run, row) in analysed.items():
        control = next((a for (m, s, _p), (pl, _r, a) in analysed.items()
                        if m == model and s == suite_id and pl.pair.is_control), None)
        usable = bool(row.outcomes.usable())
        rows.append(Row(plan, run, row, analysis.verdict(row, is_control=plan.pair.is_control, control=control,
                                                         order_confounded=plan.protocol not in ORDER_VARIES),
                        tuple(analysis.category_breakdowns(row.outcomes, categories, thresholds)) if usable else (),
                        analysis.bootstrap_gap_interval(row.outcomes, thresholds, session.config.seed)
                        if usable else None,
                        analysis.misclassification_corrected(row.outcomes, judge.name, thresholds)))
    return rows
