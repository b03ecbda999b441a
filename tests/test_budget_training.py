"""experiments/budget_training.py end to end at a tiny size: both budgeted phases, exports, the
evaluation table next to bicubic, and a second run resuming in the same workdir."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "budget_training.py"


def run_budget(workdir: pathlib.Path, data: pathlib.Path, *flags: str) -> dict:
    command = [
        sys.executable, str(SCRIPT), f"--workdir={workdir}", f"--data_dir={data}",
        f"--config={REPO / 'srgan_jax' / 'configs' / 'test.py'}", "--benchmarks=Set5",
        "--config.pretrain.lr_decay_step=5", "--config.pretrain.decayed_learning_rate=1e-4",
        *flags,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_budget_training_trains_exports_evaluates_and_resumes(shared_data, tmp_path):
    first = run_budget(tmp_path, shared_data, "--pretrain_minutes=0.2", "--gan_minutes=0.1")
    runs = first["runs"]
    assert runs["srresnet_mse"]["steps"] > 0 and runs["srgan_mse"]["steps"] > 0
    assert runs["srresnet_mse"]["learning_rate"] == "0.003, then 0.0001 from update 5"
    assert {path.name for path in tmp_path.glob("*.msgpack")} == {
        "srresnet_mse.msgpack", "srgan_mse.msgpack"
    }
    results = first["results"]
    assert set(results) == {"bicubic", "srresnet_mse", "srgan_mse"}
    assert all(row[0]["dataset"] == "Set5" and row[0]["num_images"] == 5
               for row in results.values())
    assert "| Set5 | 5 |" in (tmp_path / "results.md").read_text()

    again = run_budget(tmp_path, shared_data, "--pretrain_minutes=0.1")
    assert again["runs"]["srresnet_mse"]["steps"] > runs["srresnet_mse"]["steps"]
