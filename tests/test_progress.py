"""Progress: plain lines without a terminal, a live bar with a terminal, never on stdout."""
import io

from srgan_jax import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_every_n_items_and_after_the_last():
    stream = io.StringIO()
    with progress.Progress(5, "upscale", unit="images", stream=stream, log_every=2) as bar:
        for _ in range(5):
            bar.advance()
        bar.message("error: x.png: cannot read image")
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines[:3]] == [
        "upscale: 2/5 images", "upscale: 4/5 images", "upscale: 5/5 images"]
    assert "images/s" in lines[0] and "ETA" in lines[0] and "ETA" not in lines[2]
    assert lines[3] == "error: x.png: cannot read image"


def test_terminal_gets_a_bar_with_eta_and_nested_task(capsys):
    stream = Terminal()
    with progress.Progress(2, "evaluate Set5", unit="images", stream=stream) as bar:
        with bar.task(4, "tiles") as advance_tile:
            for _ in range(4):
                advance_tile()
        bar.advance()
        bar.message("note")
        bar.advance()
    text = stream.getvalue()
    assert "evaluate Set5" in text and "2/2" in text and "ETA" in text and "note" in text
    assert capsys.readouterr().out == ""


def test_format_duration():
    assert progress.format_duration(3725.9) == "1:02:05"
    assert progress.format_duration(-1) == "0:00:00"
