"""A readable study log: no "Finished in state Completed()" line per task run at the default level.

A default study makes hundreds of task runs; their completion lines buried the progress lines.
Failures, retries and every line at DEBUG level stay.
"""

import logging


class _DropCompleted(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and record.getMessage().startswith("Finished in state Completed")
        )


def quiet_completed_task_runs() -> None:
    """Install the filter in this process (the flow's and each experiment worker's)."""
    logger = logging.getLogger("prefect.task_runs")
    if logger.getEffectiveLevel() > logging.DEBUG and not any(
        isinstance(existing, _DropCompleted) for existing in logger.filters
    ):
        logger.addFilter(_DropCompleted())
