import json

import numpy as np
import polars as pl
import pytest

from labgap.data.datasets import (
    BUILTIN_SHA256,
    BuiltinDataset,
    Dataset,
    DatasetError,
    LocalFileDataset,
    content_sha256,
    load_dataset,
    sha256_file,
    verify_sha256,
)


def write(frame: pl.DataFrame, path):
    {".csv": frame.write_csv, ".parquet": frame.write_parquet, ".jsonl": frame.write_ndjson}[
        path.suffix
    ](path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_local_text_file(tmp_path, suffix):
    frame = pl.DataFrame({"review": ["good", "bad", "fine", "awful"], "y": ["pos", "neg"] * 2})
    path = write(frame, tmp_path / f"reviews{suffix}")
    dataset = load_dataset(LocalFileDataset(path=path, label_column="y", text_column="review"))
    assert dataset.kind == "text"
    assert dataset.texts == ("good", "bad", "fine", "awful")
    assert dataset.label_names == ("neg", "pos")
    assert dataset.labels.tolist() == [1, 0, 1, 0]


def test_local_numeric_file_uses_numeric_columns(tmp_path):
    frame = pl.DataFrame(
        {"a": [1.0, 2, 3, 4], "b": [0, 1, 0, 1], "note": list("wxyz"), "label": [0, 1, 0, 1]}
    )
    dataset = load_dataset(LocalFileDataset(path=write(frame, tmp_path / "t.parquet")))
    assert dataset.kind == "tabular"
    assert dataset.features.shape == (4, 2)


def test_local_file_sha256_is_checked(tmp_path):
    path = write(pl.DataFrame({"x": [1.0, 2.0], "label": [0, 1]}), tmp_path / "t.csv")
    ok = LocalFileDataset(path=path, sha256=sha256_file(path))
    assert len(load_dataset(ok)) == 2
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        load_dataset(LocalFileDataset(path=path, sha256="0" * 64))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pl.DataFrame({"x": [], "label": []}, schema={"x": pl.Float64, "label": pl.Int64}),
            "is empty",
        ),
        (pl.DataFrame({"x": [1.0, 2.0], "label": [1, 1]}), "single class"),
        (pl.DataFrame({"x": [1.0, 2.0, 3.0], "label": [0, None, 1]}), "1 missing value"),
        (pl.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), "label column 'label' not found"),
        (pl.DataFrame({"note": ["a", "b"], "label": [0, 1]}), "no feature columns"),
    ],
)
def test_bad_label_or_feature_columns_are_named(tmp_path, frame, message):
    path = write(frame, tmp_path / "bad.parquet")
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(LocalFileDataset(path=path))
    assert str(path) in str(error.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset(LocalFileDataset(path=tmp_path / "nope.csv"))
    garbage = tmp_path / "broken.parquet"
    garbage.write_bytes(b"this is not parquet")
    with pytest.raises(DatasetError, match="could not read it as parquet"):
        load_dataset(LocalFileDataset(path=garbage))
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_dataset(LocalFileDataset(path=odd))


def test_missing_text_values_are_refused(tmp_path):
    path = write(pl.DataFrame({"t": ["a", None], "label": [0, 1]}), tmp_path / "t.jsonl")
    with pytest.raises(DatasetError, match="text column 't' has 1 missing"):
        load_dataset(LocalFileDataset(path=path, text_column="t"))


def test_hash_mismatch_is_reported(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"abc")
    verify_sha256(path, sha256_file(path), "fixture")
    with pytest.raises(DatasetError, match="sha256 mismatch.*expected 1111"):
        verify_sha256(path, "1111", "fixture")
    with pytest.raises(DatasetError, match="is missing"):
        verify_sha256(tmp_path / "absent", "1111", "fixture")


@pytest.mark.parametrize("name", ["digits", "breast-cancer"])
def test_sklearn_datasets_match_their_pinned_hash(name):
    dataset = load_dataset(BuiltinDataset(name=name))
    assert dataset.sha256 == BUILTIN_SHA256[name]


def test_content_hash_changes_with_content():
    base = Dataset(
        name="a", features=np.ones((4, 2)), labels=np.array([0, 1, 0, 1]), label_names=("0", "1")
    )
    same = Dataset(
        name="b", features=np.ones((4, 2)), labels=np.array([0, 1, 0, 1]), label_names=("0", "1")
    )
    other = Dataset(
        name="a", features=np.ones((4, 2)), labels=np.array([1, 1, 0, 1]), label_names=("0", "1")
    )
    assert base.sha256 == same.sha256 == content_sha256(base) != other.sha256


def test_stratified_subset_keeps_every_class():
    digits = load_dataset(BuiltinDataset(name="digits"))
    subset = digits.subset(200, seed=0)
    assert len(subset) == 200
    assert set(subset.labels.tolist()) == set(range(10))
    assert subset.sha256 != digits.sha256
    assert digits.subset(200, seed=0).sha256 == subset.sha256


def test_dataset_reference_errors_name_the_field():
    with pytest.raises(ValueError, match="name"):
        BuiltinDataset.model_validate(json.loads('{"name": "imagenet"}'))
