"""The report's cost section: experiments by phase and their wall time, and each agent's LLM
usage, so a study's price is read beside its verdicts."""

from labgap.reporting.data import ReportData
from labgap.reporting.markup import text


def cost_section(data: ReportData) -> list[str]:
    lines = ["", "## Cost", ""]
    phases = data.trials_by_phase
    total = sum(phase.experiments for phase in phases)
    seconds = sum(phase.seconds or 0.0 for phase in phases)
    by_phase = ", ".join(f"{text(phase.phase)} {phase.experiments}" for phase in phases)
    lines.append(
        f"{total} experiments (trials rows; by phase: {by_phase or 'none yet'}), {seconds:.1f} s "
        f"of experiment wall time ({seconds / 3600:.2f} h, summed over workers)."
    )
    lines += ["", *_llm_cost(data)]
    return lines


def _llm_cost(data: ReportData) -> list[str]:
    """Tokens, $ and $ per agent-hour per agent, from the `cost_per_agent` view."""
    usage = [row.model_dump() for row in data.agent_costs if row.api_calls > 0]
    if not usage:
        return [f"No LLM calls recorded for this study ({text(data.study.agent_backend)} agents)."]
    header = ["agent", "API calls", "input tokens", "output tokens", "cache write", "cache read"]
    header += ["$", "experiments", "$ per agent-hour"]
    lines = ["LLM usage per agent:", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    counts = [
        "api_calls",
        "input_tokens",
        "output_tokens",
        "cache_write_tokens",
        "cache_read_tokens",
    ]
    totals = {
        "agent_id": "**total**",
        **{c: sum(row[c] for row in usage) for c in [*counts, "usd", "experiments"]},
    }
    for row in [*usage, {**totals, "usd_per_agent_hour": None}]:
        cells = [str(row["agent_id"])] + [f"{row[c] or 0:,.0f}" for c in counts]
        cells += [
            _dollars(row["usd"]),
            str(row["experiments"]),
            _dollars(row["usd_per_agent_hour"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _dollars(value) -> str:
    """Cents for real money, more digits for the fractions of a cent one call costs."""
    value = float(value or 0)
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
