import numpy as np

from labgap.engine.targets import confident_rows


def test_confident_rows_keeps_class_mix():
    targets = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]], dtype=np.float32)
    assert confident_rows(targets, 0.5).tolist() == [0, 2]
