"""The Claude backend's settings: validation, prices, where the API key comes from, and that
configuring a study never loads the SDK."""

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from labgap.errors import LabgapInputError
from labgap.llm.settings import ClaudeSettings, ModelPrice, api_key_from_env


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LabgapInputError, match="ANTHROPIC_API_KEY is not set"):
        api_key_from_env()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-env")
    assert api_key_from_env() == "sk-ant-test-env"


def test_settings_reject_unpriced_models_and_bad_ranges():
    with pytest.raises(ValidationError, match="no price for model 'claude-x'"):
        ClaudeSettings(model="claude-x")
    custom = ModelPrice(
        input_per_mtok=1, output_per_mtok=2, cache_write_per_mtok=1, cache_read_per_mtok=0.1
    )
    assert ClaudeSettings(model="claude-x", prices={"claude-x": custom}).price == custom
    with pytest.raises(ValidationError):
        ClaudeSettings(max_tokens=64_001)
    with pytest.raises(ValidationError):
        ClaudeSettings(temperature=1.5)
    with pytest.raises(ValidationError, match="http"):
        ClaudeSettings(base_url="api.anthropic.com")


def test_the_study_config_does_not_import_the_sdk():
    """`labgap.config` needs `ClaudeSettings` only; a fresh interpreter must not load `anthropic`."""
    result = subprocess.run(
        [sys.executable, "-c", "import labgap.config, sys; assert 'anthropic' not in sys.modules"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
