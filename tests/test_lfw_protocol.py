import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nullswap.cli.main import app
from nullswap.datasets.lfw import LFW, central_face
from nullswap.faces.detection import Detections


def test_central_face_picks_detection_nearest_centre():
    boxes = torch.tensor([[0.0, 0, 20, 20], [40, 40, 60, 60], [80, 0, 100, 20]])
    det = Detections(boxes, torch.zeros(3, 5, 2), torch.ones(3))
    assert central_face(det, 100, 100) == 1
    assert central_face(Detections.empty(), 100, 100) is None


@pytest.mark.shared
def test_lfw_subset_landmarks_cached_and_protocol_runs(lfw_dir, tmp_path):
    data = LFW(lfw_dir, limit_per_fold=2)
    assert len(data.pairs) == 40 and data.labels.sum() == 20 and set(data.fold_ids.tolist()) == set(range(10))
    r = CliRunner().invoke(
        app, ["recognizers", "verify", "--lfw", str(lfw_dir), "--limit", "3", "--models", "mobilefacenet-casia",
              "--out", str(tmp_path / "lfw.json")]
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "lfw.json").read_text())
    m = res["results"]["mobilefacenet-casia"]
    assert res["meta"]["pairs"] == 60
    # a real recognizer on 60 real pairs: far above chance (0.5)
    assert m["mean_accuracy"] >= 0.9 and m["auc"] >= 0.95
    # the landmark cache now answers without detection
    from nullswap.faces import create_detector

    lm = LFW(lfw_dir, limit_per_fold=3).landmarks(create_detector("mtcnn"))
    assert sum(v is not None for v in lm.values()) >= 0.95 * len(lm)
    assert all(v is None or np.asarray(v).shape == (5, 2) for v in lm.values())
