"""Training logs: TensorBoard scalars and images (without TensorFlow) and plain-text logging.

TensorBoard's own `EventFileWriter` and protos write the event files, so neither TensorFlow nor
clu is needed; images are PNG-encoded with Pillow. Only process 0 writes events (elsewhere
`create_writer` returns a logging-only writer), so a multi-host run has one event file.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from typing import Protocol

import numpy as np
from absl import logging
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...
    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) image, or a float one in [0, 1]."""
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class TensorBoardWriter:
    """Writes scalars and RGB images to one TensorBoard event file in `logdir`."""

    def __init__(self, logdir: str):
        self._writer = EventFileWriter(logdir)

    def _write(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
        summary = summary_pb2.Summary(value=values)
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._write(
            step,
            [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()],
        )

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        values = []
        for tag, image in images.items():
            height, width, channels = image.shape
            encoded = summary_pb2.Summary.Image(
                height=height, width=width, colorspace=channels, encoded_image_string=_png(image)
            )
            values.append(summary_pb2.Summary.Value(tag=tag, image=encoded))
        self._write(step, values)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class LoggingWriter:
    """Logs scalars as one `step N: name=value, ...` line through absl logging."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        line = ", ".join(f"{k}={_format(v)}" for k, v in scalars.items())
        logging.info("step %d: %s", step, line)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in images.items())
        logging.info("step %d: images %s", step, shapes)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _format(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


class MultiWriter:
    """Fans every call out to several writers."""

    def __init__(self, writers: list[MetricWriter]):
        self._writers = writers

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for writer in self._writers:
            writer.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for writer in self._writers:
            writer.write_images(step, images)

    def flush(self) -> None:
        for writer in self._writers:
            writer.flush()

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def create_writer(logdir: str, *, write_tensorboard: bool = True) -> MetricWriter:
    """Logging plus, when `write_tensorboard` (process 0), TensorBoard events in `logdir`."""
    writers: list[MetricWriter] = [LoggingWriter()]
    if write_tensorboard:
        writers.append(TensorBoardWriter(logdir))
    return MultiWriter(writers)
