"""The `labgap` command line."""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from labgap.data.datasets import BuiltinDataset, load_dataset
from labgap.data.features import EmbeddingView, build_view
from labgap.data.tasks import BUILTIN_TASKS, resolve_task, split_indices
from labgap.errors import LabgapInputError
from labgap.methods.kinds import method_label, resolve_any_method
from labgap.programs.method import parse_param_assignments

app = typer.Typer(help="Lab-to-production replication studies of weak-to-strong supervision.")
data_app = typer.Typer(help="Fetch and verify the offline datasets.")
app.add_typer(data_app, name="data")
console = Console(width=None if sys.stdout.isatty() else 140)

DbOption = Annotated[
    Path | None, typer.Option("--db", help="DuckDB file (default data/labgap.duckdb)")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(help="a method program's parameter, name=value (e.g. k=20); repeat"),
]


def fail(message: str) -> None:
    """One line on stderr, exit status 2: bad input is never a traceback."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def open_store(db: Path | None):
    from labgap.store.connection import Store

    try:
        return Store(db)
    except RuntimeError as error:
        fail(str(error))


@app.command("tasks")
def list_tasks() -> None:
    """List the built-in tasks with their sizes."""
    table = Table("task", "dataset", "rows", "classes", "weak-train", "w2s-train", "dev", "test")
    for task in BUILTIN_TASKS.values():
        dataset = load_dataset(task.dataset)
        splits = split_indices(task, len(dataset), seed=0)
        table.add_row(
            task.name,
            dataset.name,
            str(len(dataset)),
            str(dataset.n_classes),
            *(str(len(splits[name])) for name in ("weak_train", "w2s_train", "dev", "test")),
        )
    console.print(table)


@data_app.command("pull")
def pull() -> None:
    """Fetch, verify and embed every dataset the built-in tasks use."""
    for task in BUILTIN_TASKS.values():
        dataset = load_dataset(task.dataset)
        if isinstance(task.strong_view, EmbeddingView):
            build_view(task.strong_view, dataset, fit_rows=[])
    for name in ("rotten-tomatoes", "bbc-news", "digits", "breast-cancer"):
        dataset = load_dataset(BuiltinDataset(name=name))
        console.print(f"{name}: {len(dataset)} rows, sha256 {dataset.sha256} verified")


@app.command("experiment")
def experiment(
    task: Annotated[
        str, typer.Option(help="built-in task name or a TaskSpec .yaml/.json")
    ] = "rt-lab",
    method: Annotated[
        list[str] | None,
        typer.Option(
            help="preset name, MethodSpec JSON or a method program (.py); repeat; first = baseline"
        ),
    ] = None,
    param: ParamOption = None,
    seeds: Annotated[int, typer.Option(min=1, max=100, help="number of seeds")] = 5,
    first_seed: Annotated[
        int, typer.Option(min=0, help="seeds are first_seed, first_seed+1, ...")
    ] = 0,
    study_id: Annotated[str, typer.Option(help="rows are recorded under this study id")] = "adhoc",
    db: DbOption = None,
) -> None:
    """Compare methods on one task with paired seeds; record every trial."""
    from labgap.engine.w2s import TrialFailure, W2SEngine
    from labgap.experiment import run_comparison, summarise
    from labgap.plan import planned_task
    from labgap.store.record import (
        StudyRecorder,
        load_recorded_programs,
        recorded_failures,
        recorded_trials,
    )
    from labgap.trials import LocalExecutor, TrialBook
    from labgap.version import code_version

    try:
        spec = resolve_task(task)
        params = parse_param_assignments(param or [])
        references = method or ["vanilla", "logconf"]
        if params and not any(m.endswith(".py") for m in references):
            raise LabgapInputError("--param sets a program's parameters; no --method is a .py")
        methods = [resolve_any_method(m, params if m.endswith(".py") else None) for m in references]
        planned_task(spec, "lab")
    except LabgapInputError as error:
        fail(str(error))
    if len({m.method_hash for m in methods}) < len(methods):
        fail("the same method was given twice; give each method once")
    seed_list = list(range(first_seed, first_seed + seeds))
    with open_store(db) as store:
        load_recorded_programs(store)
        labels = {m.method_hash: method_label(m) for m in methods}

        def report(result, reused):
            label = labels[result.method_hash]
            source = "recorded" if reused else f"{result.wall_seconds:.1f}s"
            if isinstance(result, TrialFailure):
                console.print(f"  seed {result.seed} {label:<12} [red]failed[/red]: {result.error}")
                return
            pgr = "undefined" if result.pgr_test is None else f"{result.pgr_test:+.3f}"
            console.print(f"  seed {result.seed} {label:<12} PGR(test) {pgr}  ({source})")

        console.print(f"{spec.name}: {len(methods)} method(s) × {len(seed_list)} seed(s)")
        recorder = StudyRecorder(store, study_id, code_version())
        book = TrialBook(
            LocalExecutor(W2SEngine()),
            recorded_trials(store, study_id),
            recorder.trials,
            failed=recorded_failures(store, study_id),
        )
        results = run_comparison(book, spec, methods, seed_list, report)
        summary = summarise(results, methods)
        path = store.path
    table = Table(
        "method",
        "seeds",
        "weak acc",
        "ceiling acc",
        "PGR dev",
        "PGR test",
        "Δ PGR vs first [95% CI]",
    )
    for row in summary.iter_rows(named=True):
        diff = "—"
        if row["diff_ci_low"] is not None:
            diff = f"{row['diff_vs_first']:+.3f} [{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}]"
        table.add_row(
            row["method"],
            str(row["seeds"]),
            f"{row['weak_acc']:.3f} ± {row['weak_sd'] or 0:.3f}",
            f"{row['ceiling_acc']:.3f} ± {row['ceiling_sd'] or 0:.3f}",
            f"{row['pgr_dev']:.3f}",
            f"{row['pgr_test']:.3f} ± {row['pgr_sd'] or 0:.3f}",
            diff,
        )
    console.print(table)
    console.print(f"trials recorded in {path} (study id {study_id!r})")


@app.command("run")
def run(
    profile: Annotated[str, typer.Option(help="quick | default | full")] = "default",
    config: Annotated[Path | None, typer.Option(help="StudyConfig YAML/JSON file")] = None,
    study_id: Annotated[str | None, typer.Option(help="resume or name this study id")] = None,
    seed: Annotated[int | None, typer.Option(help="study seed")] = None,
    agents: Annotated[str | None, typer.Option(help="agent backend: embedded | claude")] = None,
    workers: Annotated[int | None, typer.Option(help="parallel experiment processes")] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="replicate this method instead of searching: a program (.py), a preset name or "
            "a MethodSpec JSON"
        ),
    ] = None,
    param: ParamOption = None,
    db: DbOption = None,
) -> None:
    """Run (or resume) a replication study and print its verdict."""
    from labgap.config import load_study_config
    from labgap.llm.settings import api_key_from_env
    from labgap.plan import build_plan

    try:
        study = load_study_config(
            config,
            profile=profile if config is None or profile != "default" else None,
            study_id=study_id,
            seed=seed,
            agent_backend=agents,
            workers=workers,
            candidate_method=method,
            candidate_params=parse_param_assignments(param or []) or None,
        )
        if study.agent_backend == "claude":
            api_key_from_env()
        build_plan(study)
    except LabgapInputError as error:
        fail(str(error))
    if db is None or db.exists():
        open_store(db).close()
    from prefect.exceptions import TerminationSignal

    from flows.api import local_prefect_api
    from flows.study import replication_study

    try:
        with local_prefect_api():
            summary = replication_study(config=study, db_path=str(db) if db else None)
    except (KeyboardInterrupt, TerminationSignal):
        console.print(
            "[yellow]cancelled:[/yellow] the study is marked cancelled; run the same command "
            "again to resume it"
        )
        raise typer.Exit(130) from None
    print_summary(summary)


@app.command("report")
def report(
    study_id: Annotated[str | None, typer.Argument(help="default: the latest study")] = None,
    db: DbOption = None,
) -> None:
    """Print a study's report (and write it with its plots under data/reports/<study id>/)."""
    from labgap.reporting.data import latest_study_id, load_report_data
    from labgap.reporting.markdown import write_report

    with open_store(db) as store:
        chosen = study_id or latest_study_id(store)
        if chosen is None:
            fail(f"no studies in {store.path}; run `labgap run` first")
        try:
            files = write_report(load_report_data(store, chosen))
        except LabgapInputError as error:
            fail(str(error))
    print(files.markdown.read_text())
    print(f"\n(report and plots in {files.folder})")


@app.command("sql")
def sql(
    query: Annotated[str, typer.Argument(help="one SQL query, e.g. 'SELECT * FROM verdicts'")],
    csv: Annotated[bool, typer.Option("--csv", help="print CSV instead of a table")] = False,
    db: DbOption = None,
) -> None:
    """Query the analysts' snapshot of the database, read-only (never the study's own file)."""
    from rich.text import Text

    from labgap.store.snapshot import read_snapshot

    try:
        frame = read_snapshot(db, query)
    except LabgapInputError as error:
        # Plain and unwrapped on stderr: one line, and stdout stays clean for --csv readers.
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if csv:
        sys.stdout.write(frame.write_csv())
        return
    table = Table()
    for column in frame.columns:
        table.add_column(Text(column))
    for row in frame.iter_rows():
        table.add_row(*(Text("NULL" if value is None else str(value)) for value in row))
    console.print(table)
    console.print(f"{frame.height} row(s)")


VERDICT_STYLES = {"replicated": "green", "failed_to_replicate": "red", "inconclusive": "yellow"}


def print_summary(summary) -> None:
    """The study's two headline verdicts, each labelled with its question, the evidence before
    them; the overall verdict only as both questions together, never alone in bold."""
    from rich.markup import escape

    from labgap.reporting.questions import BOTH, QUESTIONS, REPEATED_INTERVALS, seeds_text

    def number(value, digits=3):
        return "—" if value is None else f"{value:+.{digits}f}"

    console.print(f"\n[bold]study {summary.study_id}[/bold] ({summary.status})")
    console.print(f"lab baseline (vanilla) dev PGR: {number(summary.baseline_dev_pgr)}")
    if summary.winner_label:
        source = "given, not searched" if summary.winner_given else "the agents' winner"
        console.print(f"lab method ({source}): {summary.winner_label}")
    console.print(
        f"winner ({summary.winner_family}): naive dev PGR {number(summary.winner_dev_pgr)}, "
        f"fresh-seed test PGR {number(summary.winner_fresh_test_pgr)} "
        f"(vanilla {number(summary.baseline_fresh_test_pgr)})"
    )
    console.print(
        f"lab effect on fresh seeds: {number(summary.lab_effect)} "
        f"[95% CI {number(summary.lab_ci95_low)}, {number(summary.lab_ci95_high)}], "
        f"seeds {seeds_text(summary.lab_seeds, summary.lab_stop_reason)}; "
        f"naive (selected, upward-biased): {number(summary.naive_lab_effect)}"
    )
    known = summary.versus_known
    if known is not None:
        console.print(
            f"winner − known methods ({known.role}) on the same fresh seeds: "
            f"{number(known.effect)} [95% CI {number(known.ci95_low)}, {number(known.ci95_high)}]"
            f": {known.verdict}"
        )
    table = Table("target", "role", "seeds", "effect [95% CI]", "transfer ratio", "verdict")
    for target in summary.targets:
        table.add_row(
            target.target,
            target.role or "",
            seeds_text(target.n, target.stop_reason),
            f"{number(target.effect)} [{number(target.ci95_low)}, {number(target.ci95_high)}]",
            number(target.rho, 2),
            target.verdict or "",
        )
    console.print(table)
    if summary.design == "sequential":
        console.print(
            f"sequential design: beside its seeds, why a task got no more; {REPEATED_INTERVALS}"
        )
    for question, label in QUESTIONS.items():
        verdict = getattr(summary, f"{question}_verdict")
        style = f"bold {VERDICT_STYLES.get(verdict, '')}".strip()
        console.print(f"{label}: {verdict or '—'}", style=style)
        for reason in getattr(summary, f"{question}_reasons"):
            console.print(f"  {escape(reason)}")
    if summary.generalisation_verdict and summary.production_verdict:
        console.print(
            f"{BOTH}: {summary.overall_verdict} (replicated only if both are; it answers "
            "neither question alone)"
        )
    if summary.hacking_flags:
        console.print(f"reward-hacking flags on the winner: {', '.join(summary.hacking_flags)}")
    console.print(f"database: {summary.database}")


def invoke(argv: list[str] | None = None) -> int:
    """Run one command; usage errors (a bad option, a value out of range) are one line too."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Abort:
        return 130
    except typer.TyperException as error:
        typer.echo(f"error: {' '.join(error.format_message().split())}", err=True)
        return 2
    return code if isinstance(code, int) else 0


def main() -> None:
    """Console entry point: leave as soon as the command is done.

    By then everything is on disk and the Prefect API has every log and event; the interpreter's
    teardown after a flow would only print pages of duckdb/nanobind "leaked instances" warnings
    below the verdict.
    """
    code = invoke()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
