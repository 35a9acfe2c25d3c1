"""Data-quality gates: each stage's frame is checked against its GX suite before the next stage
reads it.

Why it is built this way:

* Suites are plain great-expectations 1.x suite JSON in `expectations/<stage>.json`, so they can
  be read and edited without Python. An expectation is critical only if its `meta` says
  `"critical": true`; other failures are warnings: recorded, never raised.
* Frames are validated in memory (`to_pandas()`): GX's SQL datasource does not work on DuckDB.
* GX contexts are not thread-safe and `gx.get_context` sets a process-wide "current context" that
  GX itself consults while validating, so every call builds its own ephemeral context and holds a
  lock while it validates. A call takes 0.1-0.3 s and is bound by the GIL anyway, so
  serialising calls costs nothing measurable.
* GX is imported lazily (it takes seconds to import) so importing labgap stays fast.
* A suite may refer to `{"$PARAMETER": "study_ids"}`: the one-element list of the study being
  checked, so rows of another study cannot slip into a stage.
* An empty frame fails every suite: each has a critical `expect_table_row_count_to_be_between`
  with `min_value` 1, because a stage that produced nothing must stop the study, not feed
  nothing forward.

No type expectations: with pandas 3 string columns have dtype `str`, and polars' own schema
already fixes the types; the suites check values, keys and relations.
"""

import json
import os
import threading
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from labgap.errors import LabgapInputError

STAGES = (
    "tasks",
    "agents",
    "trials",
    "failed_trials",
    "method_programs",
    "scoring_calls",
    "forum_posts",
    "agent_messages",
    "llm_calls",
    "leaderboard",
    "transfer_trials",
    "gap_results",
)

_CHECK_ID = "labgap_check_id"
"""Meta key that carries a check's stable id through GX (results come back in another order)."""

_GX_LOCK = threading.Lock()


class QualityCheck(BaseModel):
    """One expectation's outcome on one stage; a row of the `quality_checks` table."""

    model_config = ConfigDict(frozen=True)

    study_id: str
    stage: str
    expectation: str
    column_name: str | None
    critical: bool
    success: bool
    element_count: int | None
    unexpected_count: int | None
    detail: str

    @property
    def expectation_type(self) -> str:
        return self.expectation.split(":", 1)[0]

    def describe(self) -> str:
        if self.column_name is None:
            where = "on the table"
        elif "," in self.column_name:
            where = f"on columns '{self.column_name}'"
        else:
            where = f"on column '{self.column_name}'"
        return f"{self.expectation_type} {where}: {self.detail}"


class QualityGateError(LabgapInputError):
    """A stage's output broke a critical expectation: the data is bad, so retrying cannot help."""

    def __init__(self, stage: str, failures: list[QualityCheck]):
        self.stage = stage
        self.failures = failures
        lines = "; ".join(check.describe() for check in failures)
        super().__init__(f"quality gate '{stage}' failed: {lines}")

    def __reduce__(self):
        # Orchestrators pickle exceptions across processes; the default uses only the message.
        return type(self), (self.stage, self.failures)


class SuiteError(LabgapInputError):
    """A stage has no suite, or its suite file is missing or invalid."""


class SuiteResult(BaseModel):
    """Every check of one stage, passed or not, in suite order."""

    model_config = ConfigDict(frozen=True)

    stage: str
    checks: list[QualityCheck]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[QualityCheck]:
        return [c for c in self.checks if c.critical and not c.success]

    @property
    def warnings(self) -> list[QualityCheck]:
        return [c for c in self.checks if not c.critical and not c.success]

    def raise_for_failures(self) -> "SuiteResult":
        """Raise QualityGateError if a critical check failed; returns self so calls chain."""
        if self.failures:
            raise QualityGateError(self.stage, self.failures)
        return self


def expectations_dir() -> Path:
    override = os.environ.get("LABGAP_EXPECTATIONS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "expectations"


def load_suite(stage: str) -> dict[str, Any]:
    """Read and sanity-check `expectations/<stage>.json` (GX suite JSON)."""
    if stage not in STAGES:
        raise SuiteError(f"unknown quality stage {stage!r}; stages are {', '.join(STAGES)}")
    path = expectations_dir() / f"{stage}.json"
    try:
        suite = json.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"no expectation suite for stage {stage!r}: {path} is missing") from None
    except (OSError, json.JSONDecodeError) as error:
        raise SuiteError(f"cannot read expectation suite {path}: {error}") from error
    expectations = suite.get("expectations") if isinstance(suite, dict) else None
    if not isinstance(expectations, list) or not expectations:
        raise SuiteError(f"{path}: expected an object with a non-empty 'expectations' list")
    for index, item in enumerate(expectations):
        if not (isinstance(item, dict) and isinstance(item.get("type"), str)):
            raise SuiteError(f"{path}: expectation {index} needs a 'type' string")
        if not isinstance(item.get("kwargs", {}), dict):
            raise SuiteError(f"{path}: expectation {index} ({item['type']}): kwargs must be a dict")
        if not isinstance(item.get("meta", {}).get("critical", False), bool):
            raise SuiteError(
                f"{path}: expectation {index} ({item['type']}): meta.critical must be a bool"
            )
    return suite


def _columns(kwargs: dict[str, Any], condition: Any) -> str | None:
    """The column(s) a check is about; for a conditioned table check, the condition's column."""
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(kwargs["column_list"])
    column = getattr(condition, "column", None)
    return column.name if column is not None else None


def _build(stage: str, suite: dict[str, Any]):
    """GX expectations for a suite, plus id -> (critical, columns, row condition) per check.

    Builds each expectation itself because `gx.ExpectationSuite(expectations=[dicts])` only logs
    an invalid expectation and silently drops it.
    """
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations, info, seen = [], {}, {}
    for index, item in enumerate(suite["expectations"]):
        try:
            expectation = ExpectationConfiguration(
                type=item["type"],
                kwargs=dict(item.get("kwargs", {})),
                meta=dict(item.get("meta", {})),
                notes=item.get("notes"),
            ).to_domain_obj()
        except Exception as error:
            raise SuiteError(
                f"expectation suite {stage!r}, expectation {index} ({item['type']}): {error}"
            ) from error
        condition = getattr(expectation, "row_condition", None)
        columns = _columns(item.get("kwargs", {}), condition)
        key = f"{item['type']}:{columns}" if columns else item["type"]
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key}#{seen[key]}"
        expectation.meta = {**expectation.meta, _CHECK_ID: key}
        info[key] = (item.get("meta", {}).get("critical", False), columns, condition)
        expectations.append(expectation)
    return expectations, info


def _expected(kwargs: dict[str, Any]) -> str:
    if "value" in kwargs:
        return f"expected {kwargs['value']}"
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"expected {low}..{high}"
    if low is not None:
        return f"expected >= {low}"
    if high is not None:
        return f"expected <= {high}"
    return ""


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _detail(result, condition: Any) -> str:
    """Short human text for one GX result: counts, examples, or the error GX caught."""
    info = result.exception_info or {}
    # A single-metric failure comes as one dict; a failed metric bundle as a dict of them.
    errors = [info] if "raised_exception" in info else list(info.values())
    messages = [e.get("exception_message") for e in errors if e.get("raised_exception")]
    if messages:
        return f"error: {messages[0].removeprefix('Error: ')}"
    outcome = result.result or {}
    kwargs = result.expectation_config.kwargs
    where = f" where {condition!r}" if condition is not None else ""
    if "unexpected_count" in outcome:
        text = f"{outcome['unexpected_count']} unexpected of {outcome['element_count']} rows{where}"
        if kwargs.get("mostly") is not None:
            text += f" (mostly {kwargs['mostly']})"
        if outcome["unexpected_count"] and outcome.get("partial_unexpected_list"):
            text += f", e.g. {_short(outcome['partial_unexpected_list'][:3])}"
        return text
    if "observed_value" in outcome:
        mismatched = (outcome.get("details") or {}).get("mismatched")
        if mismatched:  # a column-set check: name the missing or extra columns, not all of them
            return ", ".join(f"{kind} {_short(names)}" for kind, names in mismatched.items())
        noun = " rows" if result.expectation_config.type.startswith("expect_table_row") else ""
        text = f"observed {_short(outcome['observed_value'])}{noun}{where}"
        expected = _expected(kwargs)
        return f"{text}, {expected}" if expected and not result.success else text
    return "ok" if result.success else "failed"


def _validate(frame: pl.DataFrame, expectations: list, study_id: str):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch = (
        context.data_sources.add_pandas("labgap")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    )
    suite = gx.ExpectationSuite(name="labgap", expectations=expectations)
    return batch.validate(
        suite, result_format="SUMMARY", expectation_parameters={"study_ids": [study_id]}
    )


def validate_stage(stage: str, frame: pl.DataFrame, study_id: str) -> SuiteResult:
    """Validate one stage's output; returns every check. Call `raise_for_failures()` to gate."""
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"validate_stage expects a polars DataFrame, got {type(frame).__name__}")
    suite = load_suite(stage)
    with _GX_LOCK:
        expectations, info = _build(stage, suite)
        outcome = _validate(frame, expectations, study_id)
    by_id = {r.expectation_config.meta[_CHECK_ID]: r for r in outcome.results}
    checks = []
    for key, (critical, columns, condition) in info.items():
        result = by_id[key]
        counts = result.result or {}
        checks.append(
            QualityCheck(
                study_id=study_id,
                stage=stage,
                expectation=key,
                column_name=columns,
                critical=critical,
                success=bool(result.success),
                # Table-level checks look at the whole frame; a check that errored saw nothing.
                element_count=counts.get("element_count", frame.height if counts else None),
                unexpected_count=counts.get("unexpected_count"),
                detail=_detail(result, condition),
            )
        )
    return SuiteResult(stage=stage, checks=checks)
