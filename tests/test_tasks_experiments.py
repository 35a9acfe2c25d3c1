"""The experiment task: what Prefect retries (the pipeline's own errors) and what it does not."""

import pytest
from prefect import flow

import tasks.experiments
from labgap.engine.w2s import TrialFailure, TrialLimits, W2SEngine
from labgap.methods.spec import MethodSpec
from tasks.experiments import run_experiment

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_a_trial_past_its_timeout_is_a_failure_that_is_not_retried(tiny_binary_task, monkeypatch):
    """The first attempt is lost to a transient error and retried, as pipeline errors are; the
    trial then times out, which comes back as a failure, once: retrying would only fail again."""
    engine = W2SEngine(disk_cache=False)
    real, attempts = engine.run, []

    def counted(*args):
        attempts.append(args)
        if len(attempts) == 1:
            raise ConnectionError("injected: connection reset")
        return real(*args)

    monkeypatch.setattr(engine, "run", counted)
    monkeypatch.setattr(tasks.experiments, "_engine", engine)

    @flow
    def one_trial():
        limits = TrialLimits(timeout_seconds=0.001)
        experiment = run_experiment.with_options(retry_delay_seconds=0)  # the same retry rule
        return experiment(tiny_binary_task, MethodSpec(), 0, limits)

    outcome = one_trial()
    assert isinstance(outcome, TrialFailure) and "0.001 s trial timeout" in outcome.error
    assert len(attempts) == 2
