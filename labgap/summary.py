"""What a finished study says, read back from DuckDB (the single source of truth)."""

import json

from pydantic import BaseModel

from labgap.methods import PRESETS
from labgap.store import Store


class TargetSummary(BaseModel):
    target: str
    role: str | None
    n: int | None
    effect: float | None
    ci95_low: float | None
    ci95_high: float | None
    rho: float | None
    verdict: str | None
    reasons: list[str]


class StudySummary(BaseModel):
    study_id: str
    name: str
    status: str
    database: str
    baseline_dev_pgr: float | None
    winner_method: str | None
    winner_family: str | None
    winner_dev_pgr: float | None
    winner_fresh_test_pgr: float | None
    baseline_fresh_test_pgr: float | None
    lab_effect: float | None
    lab_ci95_low: float | None
    lab_ci95_high: float | None
    naive_lab_effect: float | None
    targets: list[TargetSummary]
    overall_verdict: str | None
    overall_reasons: list[str]
    hacking_flags: list[str]


def summarise_study(store: Store, study_id: str) -> StudySummary:
    study = store.query("SELECT * FROM studies WHERE study_id = ?", [study_id]).row(0, named=True)
    board = store.query(
        "SELECT * FROM leaderboard WHERE study_id = ? ORDER BY rank LIMIT 1", [study_id]
    )
    baseline = store.query(
        "SELECT avg(pgr_dev) AS pgr FROM trials t JOIN tasks k USING (study_id, task_hash) "
        "WHERE t.study_id = ? AND k.role = 'lab' AND t.phase = 'search' "
        "AND t.method_hash = ?",
        [study_id, PRESETS["vanilla"].method_hash],
    )
    fresh = store.query(
        "SELECT avg(winner_pgr) AS winner, avg(baseline_pgr) AS baseline FROM transfer_trials "
        "WHERE study_id = ? AND role = 'lab_confirmation'",
        [study_id],
    )
    gaps = store.query("SELECT * FROM gap_results WHERE study_id = ?", [study_id])
    lab = gaps.filter(gaps["kind"] == "lab")
    overall = gaps.filter(gaps["kind"] == "overall")
    lab_row = lab.row(0, named=True) if lab.height else {}
    hacking = json.loads(study["hacking_flags"]) if study["hacking_flags"] else {"flags": []}
    winner = board.row(0, named=True) if board.height else {}
    return StudySummary(
        study_id=study_id,
        name=study["name"],
        status=study["status"],
        database=str(store.path),
        baseline_dev_pgr=baseline["pgr"][0] if baseline.height else None,
        winner_method=winner.get("method_json"),
        winner_family=winner.get("family"),
        winner_dev_pgr=winner.get("mean_dev_pgr"),
        winner_fresh_test_pgr=fresh["winner"][0] if fresh.height else None,
        baseline_fresh_test_pgr=fresh["baseline"][0] if fresh.height else None,
        lab_effect=lab_row.get("delta"),
        lab_ci95_low=lab_row.get("ci95_low"),
        lab_ci95_high=lab_row.get("ci95_high"),
        naive_lab_effect=lab_row.get("naive_estimate"),
        targets=[
            TargetSummary(
                target=row["target"],
                role=json.loads(row["detail_json"]).get("role"),
                n=row["n"],
                effect=row["delta"],
                ci95_low=row["ci95_low"],
                ci95_high=row["ci95_high"],
                rho=row["rho"],
                verdict=row["verdict"],
                reasons=json.loads(row["reasons"]),
            )
            for row in gaps.filter(gaps["kind"] == "target").iter_rows(named=True)
        ],
        overall_verdict=study["overall_verdict"],
        overall_reasons=json.loads(overall["reasons"][0]) if overall.height else [],
        hacking_flags=hacking["flags"],
    )


class VerdictChange(BaseModel):
    """A study whose overall verdict differs from the previous completed study of the same name."""

    name: str
    study_id: str
    verdict: str
    previous_study_id: str
    previous_verdict: str


def verdict_change(store: Store, study_id: str) -> VerdictChange | None:
    rows = store.query(
        "SELECT study_id, overall_verdict FROM studies "
        "WHERE name = (SELECT name FROM studies WHERE study_id = ?) AND status = 'completed' "
        "AND (started_at < (SELECT started_at FROM studies WHERE study_id = ?) OR study_id = ?) "
        "ORDER BY started_at DESC LIMIT 2",
        [study_id, study_id, study_id],
    )
    if rows.height < 2 or rows["study_id"][0] != study_id:
        return None
    current, previous = rows.row(0, named=True), rows.row(1, named=True)
    if current["overall_verdict"] == previous["overall_verdict"]:
        return None
    name = store.query("SELECT name FROM studies WHERE study_id = ?", [study_id])["name"][0]
    return VerdictChange(
        name=name,
        study_id=study_id,
        verdict=current["overall_verdict"],
        previous_study_id=previous["study_id"],
        previous_verdict=previous["overall_verdict"],
    )
