"""Which failures are worth retrying: transient ones yes, bad input never."""

from prefect.tasks import exponential_backoff
from pydantic import ValidationError

from labgap.errors import LabgapInputError

PERMANENT_ERRORS = (LabgapInputError, ValidationError, TypeError, KeyError)


def is_transient(task, task_run, state) -> bool:
    """Retry unless the failure says the input itself is wrong (retrying cannot fix that)."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except Exception:
        return True
    return False


RETRY_OPTIONS = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_transient,
}
