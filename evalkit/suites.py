"""Suites and sessions: which runs a session needs, and executing them through the store.

The pytest plugin and the CLI are two thin faces over this module: both build a
``SessionConfig`` from the same options, plan the same runs and get the same rows.
Everything a run needs is validated here, up front, before any engine boots.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from . import analysis, analysis_cache
from .analysis import Breakdown, RowAnalysis  # by name: Row's field `analysis` shadows the module in its body
from .analysis_cache import RunAnalysis
from .datasets import Dataset, Selection, load_behaviors, resolve_harmbench, select
from .engines import Engine, EngineConfig, create_engine, engine_factory, engine_names
from .errors import ConfigError, EvalkitError
from .framings import FramingPair, FramingSet, load_framing_set
from .judges import Judge, JudgeSettings, build_judges, positive_label, validate_judges
from .models import ModelEntry, resolve_models
from .options import ENGINE
from .protocols import PROTOCOLS, Schedule, build_schedule, order_protocol
from .runs import DEFAULT_SYNC, RunResult, RunSpec, RunStore, SyncPolicy, execute, judge_failed

if TYPE_CHECKING:  # a type only: importing it would load the statistics at start-up
    from .stats import CorrectedGap

DEFAULT_SIM_MODELS = ("study-pilot", "qwen-control")
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
    engine: str = "sim"  # the engine of every model whose specification names none
    # the models under test; a plain string is a model that is its own alias
    models: tuple[ModelEntry | str, ...] = DEFAULT_SIM_MODELS
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", self.model_entries)

    @property
    def model_entries(self) -> tuple[ModelEntry, ...]:
        """``models`` as entries (after ``__post_init__``, every one is)."""
        return tuple(m if isinstance(m, ModelEntry) else ModelEntry(alias=m, model=m) for m in self.models)

    @classmethod
    def from_options(cls, values: dict[str, Any], engine_options: dict[str, Any]) -> SessionConfig:
        for dest, flag in (("engine", "--engine"), ("judge", "--judge"), ("framings", "--framings"),
                           ("models_file", "--models-file")):
            if values.get(dest) == "":  # an unset variable in a script: not the default
                raise ConfigError("empty value", option=flag)
        engine = values.get("engine") or "sim"
        engine_factory(engine)  # unknown engine: say so before anything else
        models = resolve_models(values.get("model"), values.get("models_file"), engine_names(),
                                {o.dest: o for o in ENGINE})
        if not models:
            if engine != "sim":
                raise ConfigError(f"--model is required with --engine {engine}", option="--model")
            models = tuple(ModelEntry(alias=m, model=m) for m in DEFAULT_SIM_MODELS)
        thresholds = analysis.Thresholds(
            alpha=in_range(values.get("alpha", 0.05), "--alpha", 0.0, 1.0, open_low=True, open_high=True),
            max_flip_rate=in_range(values.get("max_flip_rate", 0.05), "--max-flip-rate", 0.0, 1.0),
            max_error_rate=in_range(values.get("max_error_rate", 0.0), "--max-error-rate", 0.0, 1.0),
            equivalence_margin=(None if values.get("equivalence_margin") in (None, 0) else in_range(
                values["equivalence_margin"], "--equivalence-margin", 0.0, 1.0, open_low=True)),
            ci_method=values.get("ci_method") or "newcombe",
            require_equivalence=bool(values.get("require_equivalence")))
        return cls(engine=engine, models=models, harmbench=values.get("harmbench"),
                   framings=values.get("framings") or "study-raw", pairs=tuple(values.get("pair") or ()),
                   suites=tuple(values.get("suite") or ()), seed=int(values.get("seed") or 0), n=values.get("n"),
                   batch_size=values.get("batch_size"), results_dir=values.get("results_dir"),
                   judge=values.get("judge") or "refusal",
                   max_tokens=int(128 if values.get("max_tokens") is None else values["max_tokens"]),
                   temperature=float(values.get("temperature") or 0.0), engine_options=dict(engine_options),
                   thresholds=thresholds, fresh=bool(values.get("fresh")),
                   multiplicity=values.get("multiplicity") or "holm",
                   sync=DEFAULT_SYNC if values.get("sync") is None else SyncPolicy.parse(values["sync"]),
                   judge_settings=JudgeSettings.from_options(values))  # --judge-engine ... --vote-tie


def in_range(value: Any, option: str, low: float, high: float, open_low: bool = False, open_high: bool = False
             ) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {value!r}", option=option) from None
    if not math.isfinite(number):
        raise ConfigError(f"expected a finite number, got {number}", option=option)
    if number < low or number > high or (open_low and number == low) or (open_high and number == high):
        raise ConfigError(f"{number} is outside {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}",
                          option=option)
    return number


@dataclass(frozen=True)
class RunPlan:
    """One (model, suite, framing pair) run: its schedule and specification. ``model`` is the
    alias (rows, snapshots, reports); ``spec.model`` the full specification (the run's identity)."""

    model: str
    suite: Suite
    pair: FramingPair
    protocol: str
    batch_size: int
    dataset: Dataset
    schedule: Schedule
    spec: RunSpec
    engine_config: EngineConfig
    entry: ModelEntry | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.suite.id, self.pair.id)

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
    # suites that cannot run on this dataset (too few behaviors), with the message saying why
    unavailable: dict[str, str] = field(default_factory=dict)

    def plan(self, model: str, suite_id: str, pair_id: str) -> RunPlan:
        for plan in self.plans:
            if plan.key == (model, suite_id, pair_id):
                return plan
        raise KeyError((model, suite_id, pair_id))

    def control_of(self, key: tuple[str, str, str]) -> RunPlan | None:
        """The A/A control run of a row's model and suite, if the session has one."""
        return next((p for p in self.plans if p.model == key[0] and p.suite.id == key[1] and p.pair.is_control),
                    None)


def engine_config(config: SessionConfig, model: ModelEntry | str) -> EngineConfig:
    """A model's engine configuration: its own engine (else --engine), the command line's engine
    options when it runs on --engine, then its models-file options and revision."""
    entry = model if isinstance(model, ModelEntry) else ModelEntry(alias=model, model=model)
    engine = entry.engine or config.engine
    options = dict(config.engine_options) if engine == config.engine else {}
    options.update(entry.options)
    if entry.revision:
        options["revision"] = entry.revision
    for key in entry.options:
        option = next((o for o in ENGINE if o.dest == key), None)
        if option is not None and option.engines and engine not in option.engines:
            name = option.flag.lstrip("-").replace("-", "_")
            raise ConfigError(f"{name} applies to engine {' or '.join(option.engines)}, not {engine}",
                              file=f"{entry.source} [models.{entry.alias}]")
    engine_factory(engine)
    return EngineConfig(engine=engine, model=entry.model, seed=config.seed, max_tokens=config.max_tokens,
                        temperature=config.temperature, options=options)


def engine_identity(cfg: EngineConfig) -> dict[str, Any]:
    """The engine part of a run's identity, computed without booting the engine."""
    factory = engine_factory(cfg.engine)
    base = {"engine": cfg.engine, "model": cfg.model, "seed": cfg.seed, "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature, "options": dict(sorted(cfg.options.items()))}
    identity = factory.identity(cfg)
    if identity is not None:  # an engine whose outputs depend on nothing beyond its config adds nothing
        base["identity"] = identity
    return base


def validate_engine(cfg: EngineConfig) -> None:
    """Engine-specific validation (unknown profile, GPU-only settings) before any boot."""
    engine_factory(cfg.engine).validate(cfg)


def prepare(config: SessionConfig) -> Session:
    """Validate every input and plan every run. Raises EvalkitError; boots nothing."""
    suites_all = load_suites()
    unknown = [s for s in config.suites if s not in suites_all]
    if unknown:
        raise ConfigError(f"unknown suite {unknown[0]!r}; choose from {', '.join(suites_all)}", option="--suite")
    chosen = [suites_all[s] for s in config.suites] if config.suites else [s for s in suites_all.values() if s.default]
    if config.custom_suite is not None:
        order_protocol(config.custom_suite.protocol)  # unknown: ConfigError naming --protocol
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
    for entry in config.model_entries:  # aliases and model names reach terminals, test ids and reports
        for name in (entry.alias, entry.model):
            if not name or not name.isprintable():
                raise ConfigError(f"{name[:80]!r} is empty or holds a control or formatting character",
                                  option="--model")
    framing_set = load_framing_set(config.framings)
    pairs = [framing_set.pair(p) for p in config.pairs] if config.pairs else list(framing_set.pairs)
    judge_names = (config.judge, *BASE_JUDGES)
    validate_judges(judge_names, config.judge_settings)  # names and judge options, before anything loads
    engine_configs = {m.alias: engine_config(config, m) for m in config.model_entries}
    for cfg in engine_configs.values():
        validate_engine(cfg)
    full = load_behaviors(resolve_harmbench(config.harmbench))
    # Model judges read the behavior (and its context) by id; a vote's members come along.
    judges = build_judges(judge_names, config.judge_settings, behaviors=full.behaviors)
    store = RunStore(config.results_dir or default_results_dir())
    plans, unavailable = [], {}
    for suite in chosen:
        n = config.n if config.n is not None else (suite.n or None)
        if config.n is None and n is not None and n > len(full):
            # the suite's own size, not the user's --n: the other suites still run
            unavailable[suite.id] = (
                f"suite {suite.id!r} takes the first {n} behaviors but {full.path} has {len(full)}: run the suites "
                f"that use every behavior (e.g. -m replication), pass --n {len(full)} to run it on fewer, or use a "
                "larger behaviors file")
            continue
        dataset = select(full, Selection(first=n)) if n else full
        batch_size = config.batch_size or suite.batch_size
        for pair in pairs:
            schedule = build_schedule(dataset.behaviors, pair, suite.protocol, config.seed, batch_size)
            schedule_sha256 = schedule.sha256()  # once per schedule, not once per model
            for entry in config.model_entries:
                cfg = engine_configs[entry.alias]
                spec = RunSpec(model=entry.model, engine=cfg.engine, engine_config=engine_identity(cfg),
                               framing_set=framing_set.id, framing_texts_sha256=framing_set.texts_sha256(),
                               pair=pair.id, pair_kind=pair.kind, protocol=suite.protocol, seed=config.seed,
                               batch_size=batch_size, dataset_sha256=dataset.sha256, selection=dataset.selection,
                               n_behaviors=len(dataset), schedule_sha256=schedule_sha256,
                               n_requests=len(schedule))
                plans.append(RunPlan(entry.alias, suite, pair, suite.protocol, batch_size, dataset, schedule, spec,
                                     cfg, entry))
    store.check_writable()  # creates the directory: only once every input is known to be good
    return Session(config, full, framing_set, {s.id: s for s in chosen}, plans, store, judges, unavailable)


class EnginePool:
    """Boots each model's engine at most once, and only when a run needs it. ``on_boot`` is
    told of every boot (the pytest layer counts them across processes)."""

    def __init__(self, factory: Callable[[EngineConfig], Engine] = create_engine,
                 on_boot: Callable[[EngineConfig], None] | None = None) -> None:
        self._factory = factory
        self._on_boot = on_boot
        self._engines: dict[str, Engine] = {}
        self.boots = 0

    @staticmethod
    def _key(cfg: EngineConfig) -> str:
        return repr(sorted(vars(cfg).items(), key=lambda kv: kv[0]))

    def get(self, cfg: EngineConfig) -> Engine:
        key = self._key(cfg)
        if key not in self._engines:
            self._engines[key] = self._factory(cfg)
            self.boots += 1
            if self._on_boot is not None:
                self._on_boot(cfg)
        return self._engines[key]

    def provider(self, cfg: EngineConfig) -> Callable[[], Engine]:
        return lambda: self.get(cfg)

    def release(self, cfg: EngineConfig) -> None:
        """Close one model's engine once its runs are done (frees its GPU before the next model)."""
        engine = self._engines.pop(self._key(cfg), None)
        if engine is not None:
            engine.close()

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def manifest_extra(session: Session, plan: RunPlan) -> dict[str, Any]:
    """Provenance beyond the identity: the alias, paths and the suite, for re-running by hand."""
    return {"suite": plan.suite.id, "alias": plan.model, "dataset": plan.dataset.describe(),
            "framing_set": session.framing_set.describe(),
            "rerun": {"engine": plan.spec.engine, "model": plan.spec.model, "alias": plan.model,
                      "protocol": plan.protocol, "framings": _framings_source(session), "pair": plan.pair.id,
                      "seed": plan.spec.seed, "batch_size": plan.batch_size, "n": plan.spec.n_behaviors,
                      "harmbench": plan.dataset.path, "max_tokens": session.config.max_tokens,
                      "temperature": session.config.temperature,
                      "engine_options": plan.engine_config.options,
                      # the session's judge is recorded with each request: a rerun needs it to give the same records
                      "judge": session.config.judge, "judge_options": _judge_options(session.config.judge_settings)}}


def _framings_source(session: Session) -> str:
    """--framings as a rerun reads it from any directory: a built-in name, or the file's absolute path."""
    name = session.config.framings
    return name if session.framing_set.path.startswith("<builtin>") else str(Path(name).resolve())


def _judge_options(settings: JudgeSettings) -> dict[str, Any]:
    """The judge options (options.JUDGE) that build ``settings``, credentials cut."""
    from .safety import redact

    options = {"judge_engine": settings.engine, "judge_model": settings.model,
               "judge_option": [f"{key}={value}" for key, value in settings.options],
               "vote_judges": ",".join(settings.vote_judges), "vote_tie": settings.vote_tie}
    return cast(dict[str, Any], redact(options))


def run_plan(session: Session, plan: RunPlan, pool: EnginePool, progress: Callable[[int, int], None] | None = None,
             run_dir: Path | None = None) -> RunResult:
    return execute(plan.spec, plan.schedule, session.store, pool.provider(plan.engine_config), session.judges,
                   manifest_extra=manifest_extra(session, plan), fresh=session.config.fresh,
                   session_id=session.config.session_id, run_dir=run_dir, progress=progress,
                   sync=session.config.sync)


@dataclass(frozen=True)
class Row:
    plan: RunPlan
    run: RunResult
    analysis: RowAnalysis
    verdict: str
    breakdowns: tuple[Breakdown, ...] = ()
    bootstrap_gap_ci: tuple[float, float] | None = None
    corrected_gap: CorrectedGap | None = None  # the gap corrected for the judge's measured error rates
    # flagged reasoning traces per framing (report.trace_rates), kept so a row read from the
    # analysis cache, without its records, reports them too
    trace_rates: dict[str, int | float | None] | None = None

    def __repr__(self) -> str:
        # Short on purpose: pytest prints fixture values in tracebacks, and the records
        # behind a row hold model responses, which must stay in the run store.
        n = self.analysis.result.n if self.analysis.result is not None else 0
        return f"Row({self.plan.row_id}, n={n}, verdict={self.verdict!r})"


def analyse_run(session: Session, plan: RunPlan, run: RunResult) -> RunAnalysis:
    """Everything one run's records give its row (all but the verdict, which reads the A/A
    control too)."""
    from .report import trace_rates  # the report module imports this one

    judge = next(j for j in session.judges if j.name == session.config.judge)
    # The judge's positive label is the outcome: refusal, or "flagged" for trace judges.
    outcomes = analysis.paired_outcomes(run.records, session.config.judge, positive=positive_label(judge))
    thresholds = session.config.thresholds
    try:
        row = analysis.analyse(outcomes, thresholds, order_varies=order_protocol(plan.protocol).order_varies)
    except ValueError as exc:  # e.g. a trace judge on a model without traces: every verdict n/a
        raise EvalkitError(f"{plan.row_id}, judge {judge.name}: {exc}") from None
    usable = bool(row.outcomes.usable())
    categories = {b.behavior_id: (b.semantic_category, b.functional_category) for b in session.dataset}
    return RunAnalysis(
        row, tuple(analysis.category_breakdowns(row.outcomes, categories, thresholds)) if usable else (),
        analysis.bootstrap_gap_interval(row.outcomes, thresholds, session.config.seed) if usable else None,
        analysis.misclassification_corrected(row.outcomes, judge.name, thresholds),
        cast(dict[str, int | float | None], trace_rates(run.records)),  # counts and rates, never a list
        sum(r.response.error is not None or judge_failed(r, session.judges) for r in run.records))


def analyse_plans(session: Session, results: Sequence[tuple[RunPlan, RunResult]]) -> list[Row]:
    """Rows for a set of completed runs, with each treatment row read against its A/A control."""
    return assemble_rows([(plan, run, analyse_run(session, plan, run)) for plan, run in results])


def assemble_rows(analysed: Sequence[tuple[RunPlan, RunResult, RunAnalysis]]) -> list[Row]:
    """Rows from analysed runs: each row's verdict reads the A/A control of its model and suite."""
    rows = []
    for plan, run, done in analysed:
        control = next((a.analysis for pl, _r, a in analysed
                        if pl.model == plan.model and pl.suite.id == plan.suite.id and pl.pair.is_control), None)
        verdict = analysis.verdict(done.analysis, is_control=plan.pair.is_control, control=control,
                                   order_confounded=not order_protocol(plan.protocol).order_varies)
        rows.append(Row(plan, run, done.analysis, verdict, done.breakdowns, done.bootstrap_gap_ci,
                        done.corrected_gap, done.trace_rates))
    return rows


class ProgressReporter(Protocol):
    """What a face shows while runs execute: the pytest layer a live or periodic line, the CLI a bar."""

    def run_started(self, plan: RunPlan) -> Callable[[int, int], None] | None: ...

    def run_finished(self, plan: RunPlan, result: RunResult | None) -> None: ...


@dataclass
class Materialized:
    """Analysed rows of a session's selection, each computed once; a model whose runs could not
    be made (an engine that does not boot) has its rows' error message instead."""

    rows: dict[tuple[str, str, str], Row] = field(default_factory=dict)
    errors: dict[tuple[str, str, str], str] = field(default_factory=dict)


def with_controls(session: Session, keys: Iterable[tuple[str, str, str]]) -> list[RunPlan]:
    """The plans behind ``keys`` plus each one's A/A control, in plan order: a treatment row's
    verdict reads its control, so every view of the row gives one verdict whatever was selected."""
    wanted = set(keys)
    for key in list(wanted):
        control = session.control_of(key)
        if control is not None:
            wanted.add(control.key)
    return [plan for plan in session.plans if plan.key in wanted]


def materialize(session: Session, keys: Iterable[tuple[str, str, str]], pool: EnginePool,
                progress: ProgressReporter | None = None) -> Materialized:
    """Generate (or reuse) and analyse the runs behind ``keys``, model by model: each model's
    engine boots at most once and is released before the next model's, and every row is
    analysed once, beside its A/A control."""
    out = Materialized()
    plans = with_controls(session, keys)
    for alias in dict.fromkeys(plan.model for plan in plans):
        mine = [plan for plan in plans if plan.model == alias]
        try:
            analysed = []
            for plan in mine:
                callback = progress.run_started(plan) if progress else None
                cached = analysis_cache.load(session, plan)  # a warm run: neither records nor statistics
                result = cached[0] if cached else run_plan(session, plan, pool, progress=callback)
                if progress:
                    progress.run_finished(plan, result)
                if cached:
                    analysed.append((plan, result, cached[1]))
                    continue
                done = analyse_run(session, plan, result)
                analysis_cache.save(session, plan, result, done)
                analysed.append((plan, result, done))
            out.rows.update((row.plan.key, row) for row in assemble_rows(analysed))
        except EvalkitError as exc:
            if progress:
                progress.run_finished(mine[0], None)
            out.errors.update((plan.key, f"{alias}: {exc}") for plan in mine)
        finally:
            pool.release(mine[0].engine_config)
    return out
