"""Models the train-step exporter cannot take are refused up front, in one line naming the architecture, before any
tracing and before transformers' own (multi-paragraph) auto-class error."""
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loraport_sidecar.export.train_step import main as train_step_main  # noqa: E402
from loraport_sidecar.reference import zoo  # noqa: E402


@pytest.mark.parametrize("arch,cls", [("t5", "T5ForConditionalGeneration"), ("bart", "BartForConditionalGeneration"),
                                      ("vit", "ViTForImageClassification")])
def test_refused_in_one_line(tmp_path, capsys, arch, cls):
    base = tmp_path / "base"
    zoo.build(arch).save_pretrained(base)
    out = tmp_path / "out"
    capsys.readouterr()  # transformers' own save progress bar
    t0 = time.perf_counter()
    assert train_step_main(["--base", str(base), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert err.startswith(f"export failed, nothing written: train-step export of {arch} ({cls}): only causal LMs and "
                          "*ForSequenceClassification models are supported"), err
    assert not out.exists()
    print(f"{arch}: refused in {time.perf_counter() - t0:.2f} s")
