"""The trainer's validation numbers are `srgan-jax evaluate`'s: one protocol, end to end.

A short run on image folders starts from the shipped SRResNet (a trained generator, where the PSNR
is high enough for uint8 rounding to matter), validates, and saves; its last step is exported and
`srgan-jax evaluate --model --niqe` runs on the same validation folder. The logged val/psnr,
val/ssim, val/niqe and val/hr_niqe must be what evaluate reports.
"""
from __future__ import annotations

import glob
import json
import os

import pytest
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2

from srgan_jax import cli
from srgan_jax.configs import demo
from srgan_jax.training import trainer


def _scalars(workdir: str, tag: str) -> dict[int, float]:
    values = {}
    for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
        for record in RawEventFileLoader(path).Load():
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.simple_value
    return values


def test_logged_validation_is_what_evaluate_prints(tmp_path):
    config = demo.get_config()
    config.parallelism = "none"
    config.batch_size, config.crop_size = 2, 24
    config.gan.steps = 1
    config.eval_every = config.checkpoint_every = config.sample_every = config.log_every = 1
    config.evals.niqe = {"border": None}
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
    logged = {tag: _scalars(str(tmp_path / "run"), f"val/{tag}")[1]
              for tag in ("psnr", "ssim", "niqe", "hr_niqe")}

    model = tmp_path / "model.msgpack"
    assert cli.main(["export", "--workdir", str(tmp_path / "run"), "-o", str(model)]) == 0
    report = tmp_path / "report.json"
    folder = config.data.eval_dirs[0]
    assert cli.main(["evaluate", "--model", str(model), folder, "--json", str(report),
                     "--niqe"]) == 0
    (row,) = [r for r in json.loads(report.read_text())["results"]["model"]]
    assert row["num_images"] == config.num_eval_images
    assert logged["psnr"] == pytest.approx(row["psnr"], abs=1e-3)
    assert logged["ssim"] == pytest.approx(row["ssim"], abs=1e-4)
    assert logged["niqe"] == pytest.approx(row["niqe"], abs=1e-4)
    assert logged["hr_niqe"] == pytest.approx(row["hr_niqe"], abs=1e-4)
    assert row["psnr"] > 25.0  # a trained model: uint8 rounding of SR weighs in at this PSNR
