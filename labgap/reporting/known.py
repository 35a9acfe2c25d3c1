"""The report's answer to "did the agents find something better than the known methods?",
asked apart from "does it survive production?"."""

from labgap.reporting.data import GapRow
from labgap.reporting.markup import text


def known_methods_section(rows: list[GapRow]) -> list[str]:
    lines = ["", "## Agents against the known methods (lab, fresh seeds, PGR)", ""]
    if not rows:
        return lines + ["Not measured: the known-methods baseline has not been confirmed yet."]
    row = rows[0]
    detail = row.detail
    interval = (
        "—"
        if row.ci95_low is None or row.ci95_high is None
        else f"[{row.ci95_low:+.3f}, {row.ci95_high:+.3f}]"
    )
    effect = "—" if row.delta is None else f"{row.delta:+.3f}"
    return lines + [
        "The known-methods baseline is the best of the published presets (then their knobs "
        "nudged) that one agent's scoring budget found on the search seeds, as a careful human "
        f"would have tuned them: **{text(detail.get('known', '?'))}**. The agents' winner minus "
        f"it on the same {row.n or 0} fresh lab seeds: **{effect}** PGR, 95% interval "
        f"{interval}: **{text(row.verdict or '—')}** ({text('; '.join(row.reasons))}).",
    ]
