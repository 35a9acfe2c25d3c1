"""Errors that mean the input is wrong: retrying cannot help, so orchestration never retries them."""

from pydantic import ValidationError


class LabgapInputError(ValueError):
    """Bad user input (a file, a column, a size, a setting); the message says what was expected."""


class DatasetError(LabgapInputError):
    """A dataset is missing, corrupt, unreadable or unusable for classification."""


def describe_validation(error: ValidationError, source: str) -> str:
    """Every invalid field at once, by name, with what was expected, on one line."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(value)"
        limits = item.get("ctx") or {}
        message = item["msg"].removeprefix("Value error, ")
        expected = ", ".join(
            f"{k} {v}" for k, v in limits.items() if k != "error" and str(v) not in message
        )
        problems.append(f"{field}: {message}" + (f" ({expected})" if expected else ""))
    return f"{source}: " + "; ".join(problems)
