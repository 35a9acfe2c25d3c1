"""Methods: presets, JSON, identity by hash."""

import pytest

from labgap.errors import LabgapInputError
from labgap.methods.spec import PRESETS, MethodSpec, preset_name, resolve_method


def test_presets_and_json_resolve_to_the_same_method():
    logconf = PRESETS["logconf"]
    assert resolve_method("logconf") is logconf
    assert resolve_method(logconf.canonical_json()) == logconf
    assert preset_name(resolve_method(logconf.canonical_json())) == "logconf"
    assert preset_name(MethodSpec(epochs=7)) is None


def test_identity_is_the_hash_of_the_canonical_method():
    assert MethodSpec(loss="logconf").method_hash == MethodSpec(loss="logconf").method_hash
    assert MethodSpec(loss="logconf").method_hash != MethodSpec().method_hash
    assert len({preset.method_hash for preset in PRESETS.values()}) == len(PRESETS)


def test_unknown_names_and_invalid_json_are_clear_errors():
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        resolve_method("magic")
    with pytest.raises(LabgapInputError, match="method JSON: epochs"):
        resolve_method('{"epochs": 0}')
