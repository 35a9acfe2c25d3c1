"""The study's stages as Prefect tasks, one each, run in the flow process.

They stay in the flow process on purpose: agents keep state between rounds, the lab holds the
budgets, and great-expectations contexts are not thread-safe. None is retried as a whole: the
experiments and agent rounds inside them retry on their own.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from labgap.plan import build_plan
from labgap.quality import validate_stage
from labgap.replication import analyse, replicate
from labgap.stages import given, known_methods, search

plan_stage = task(build_plan, name="1-plan", cache_policy=NO_CACHE)
search_stage = task(search, name="2-search", cache_policy=NO_CACHE)
given_stage = task(given, name="2-given-method", cache_policy=NO_CACHE)
known_stage = task(known_methods, name="3-known-methods", cache_policy=NO_CACHE)
replicate_stage = task(replicate, name="3-confirm-and-transfer", cache_policy=NO_CACHE)
analyse_stage = task(analyse, name="5-analyse", cache_policy=NO_CACHE)
quality_gate = task(
    validate_stage, name="quality-gate", cache_policy=NO_CACHE, task_run_name="gate-{stage}"
)
