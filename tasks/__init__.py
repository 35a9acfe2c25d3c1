"""Prefect tasks: thin wrappers that expose labgap's stages to orchestration."""
