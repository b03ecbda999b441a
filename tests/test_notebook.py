"""experiments/colab_tpu.ipynb runs: its code cells execute in order on 8 fake CPU devices.

No Jupyter is needed: the notebook JSON is read and its code cells are executed in one namespace
in a subprocess, without the shell (`!`) and magic (`%`) lines (install, `%cd`, TensorBoard). Right
after the cell tagged `parameters` the test's own parameters replace the notebook's: the built-in
demo images instead of DIV2K (no download), a tiny model and a few steps of both phases.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "colab_tpu.ipynb"

RUNNER = textwrap.dedent("""
    import json, sys

    notebook, parameters = json.load(open(sys.argv[1])), sys.argv[2]
    namespace = {"__name__": "__main__"}
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        lines = [line for line in cell["source"] if not line.lstrip().startswith(("!", "%"))]
        exec(compile("".join(lines), f"<cell {index}>", "exec"), namespace)
        if "parameters" in cell["metadata"].get("tags", []):
            exec(parameters, namespace)
    print("NOTEBOOK RAN", namespace["states"].step, namespace["model_file"])
""")


def _parameters(workdir: pathlib.Path, local_dir: pathlib.Path, gan_steps: int) -> str:
    return textwrap.dedent(f"""
        CODE_DIR = {str(REPO)!r}
        WORKDIR = {str(workdir)!r}
        TFDS_DATA_DIR = None
        LOCAL_DIR = {str(local_dir)!r}
        DATA_SOURCE = "demo"
        PER_DEVICE_BATCH = 1
        NUM_EVAL_IMAGES = 2
        CONFIG_OVERRIDES = {{
            "dtype": "bfloat16",
            "model.num_blocks": 1, "model.channels": 8, "model.scale": 2, "crop_size": 16,
            "pretrain.steps": 3, "gan.steps": {gan_steps}, "gan.content_loss": "vgg22",
            "gan.lr_decay_step": 1,
            "log_every": 1, "eval_every": 5, "checkpoint_every": 5, "sample_every": 5,
            "num_eval_images": 1, "num_samples": 1,
            "data.prefetch": 1, "data.num_workers": 1,
        }}
    """)


def test_notebook_is_valid_nbformat_4_and_installs_requirements_tpu():
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["accelerator"] == "TPU"
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("code", "markdown") and isinstance(cell["source"], list)
    code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert any("pip install -q -r requirements-tpu.txt" in source for source in code)
    assert (REPO / "requirements-tpu.txt").is_file()
    tagged = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    settings = "".join(tagged[0]["source"])
    for name in ("REPO_URL", "CODE_DIR", "WORKDIR", "TFDS_DATA_DIR", "gs://", "/content/drive/"):
        assert name in settings, name


def test_every_code_cell_follows_a_heading_that_says_how_long_it_takes():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    heading = None
    for index, cell in enumerate(cells):
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            heading = text.splitlines()[0]
        elif "parameters" not in cell["metadata"].get("tags", []):
            assert heading is not None and re.search(r"\((about |)[^)]*(seconds|min)", heading), (
                f"cell {index}: the heading above it ({heading!r}) gives no rough duration")


def _run_all(workdir: pathlib.Path, local_dir: pathlib.Path, gan_steps: int):
    """Runs every code cell in a fresh process, as *Run all* in a new runtime does."""
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        SRGAN_JAX_OFFLINE="1",
    )
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(NOTEBOOK), _parameters(workdir, local_dir, gan_steps)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.mark.slow
def test_notebook_code_cells_run_on_cpu_and_resume_after_a_disconnect(tmp_path):
    workdir, local_dir = tmp_path / "run", tmp_path / "local"
    result = _run_all(workdir, local_dir, gan_steps=2)
    assert "NOTEBOOK RAN 5 " in result.stdout
    assert (workdir / "generator.msgpack").is_file() and (local_dir / "generator.msgpack").is_file()
    assert "| validation_hr | 2 |" in result.stdout  # the bicubic-vs-model table
    assert any(workdir.glob("events.out.tfevents.*"))

    # A new runtime, the same settings with a longer GAN phase: *Run all* picks the run up at its
    # last checkpoint (step 5) instead of starting over, and exports and evaluates again.
    resumed = _run_all(workdir, local_dir, gan_steps=4)
    assert "resumed at step 5" in resumed.stderr, resumed.stderr[-3000:]
    assert "NOTEBOOK RAN 7 " in resumed.stdout and "| validation_hr | 2 |" in resumed.stdout
