"""GLUE files: the local tsv layouts give the Hub's fields and label ids; counts match the shared copies."""

import numpy as np
import pytest
from conftest import shared_data

from loraxs.tasks.glue import LAYOUTS, compute_metrics, load_split_local, read_tsv


@pytest.mark.parametrize(
    "folder,layout,stem,count,fields",
    [
        ("SST-2", "sst2", "train", 67_349, {"sentence"}),
        ("SST-2", "sst2", "dev", 872, {"sentence"}),
        ("CoLA", "cola", "dev", 1_043, {"sentence"}),
        ("STS-B", "stsb", "dev", 1_500, {"sentence1", "sentence2"}),
        ("QNLI", "qnli", "dev", 5_463, {"question", "sentence"}),
    ],
)
def test_shared_glue_files(folder, layout, stem, count, fields):
    rows = load_split_local(shared_data("glue"), folder, layout, stem)
    assert len(rows) == count
    assert set(rows[0]) == fields | {"label", "idx"}
    labels = [r["label"] for r in rows]
    if layout == "stsb":
        assert all(isinstance(v, float) for v in labels) and 0 <= min(labels) and max(labels) <= 5
    else:
        assert set(labels) == {0, 1}


def test_cola_first_dev_example_and_qnli_label_ids():
    cola = load_split_local(shared_data("glue"), "CoLA", "cola", "dev")
    assert cola[0] == {"sentence": "The sailors rode the breeze clear of the rocks.", "label": 1, "idx": 0}
    qnli = load_split_local(shared_data("glue"), "QNLI", "qnli", "dev")
    assert qnli[0]["label"] == 0  # "entailment" is 0 in nyu-mll/glue


def test_malformed_row_names_file_and_line(tmp_path):
    p = tmp_path / "dev.tsv"
    p.write_text("index\tquestion\tsentence\tlabel\n0\tq\ts\tentailment\n1\tonly two\n")
    with pytest.raises(ValueError, match=r"dev.tsv:3: expected at least 4 tab-separated columns, found 2"):
        read_tsv(p, LAYOUTS["qnli"])
    p.write_text("index\tquestion\tsentence\tlabel\n0\tq\ts\tmaybe\n")
    with pytest.raises(ValueError, match=r"dev.tsv:2: label 'maybe' not in \['entailment', 'not_entailment'\]"):
        read_tsv(p, LAYOUTS["qnli"])


def test_metrics_against_hand_computed_values():
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([1, 0, 0, 1, 1, 0])
    m = compute_metrics(["accuracy", "f1", "mcc"], p, y)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 3)  # tp 2, fp 1, fn 1
    assert m["mcc"] == pytest.approx((2 * 2 - 1 * 1) / 9)  # (tp·tn − fp·fn) / sqrt(3·3·3·3)
    with pytest.raises(ValueError, match=r"unknown metrics \['auc'\]"):
        compute_metrics(["auc"], p, y)
