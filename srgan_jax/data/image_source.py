"""`ImageSource`: the HR images (and a dataset's own LR images) a training or validation source
gives, whatever it reads them from: image folders and the demo (`input_pipeline`), TFDS
(`tfds_data`). A module of its own so that both import it and neither imports the other.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """HR images (uint8 (H, W, 3)), optionally with the dataset's aligned LR images.

    `hr` and `lr` are sequences: lists in memory, or lazily decoding file lists. `sizes` holds the
    (H, W) of each HR image (known without decoding it again) and `names` a name for messages.
    With `lr`, HR image i is exactly `lr_scale` times the size of LR image i.
    """

    name: str
    hr: Sequence[np.ndarray]
    names: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    lr: Sequence[np.ndarray] | None = None
    lr_scale: int | None = None

    def __len__(self) -> int:
        return len(self.hr)
