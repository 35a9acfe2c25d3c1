"""Errors that mean the input is wrong: retrying cannot help, so orchestration never retries them."""


class LabgapInputError(ValueError):
    """Bad user input (a file, a column, a size, a setting); the message says what was expected."""


class DatasetError(LabgapInputError):
    """A dataset is missing, corrupt, unreadable or unusable for classification."""
