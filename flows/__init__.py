"""Prefect flows: composition of the stage tasks in `tasks/`."""
