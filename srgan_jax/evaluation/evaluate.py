"""`srgan-jax evaluate`: Y-channel PSNR/SSIM of bicubic or a model on folders of HR images.

The protocol is the one behind published SR tables (the MATLAB scripts of SRCNN, VDSR, SRGAN):
each HR image is cropped to a multiple of the scale, degraded with MATLAB's antialiased bicubic
`imresize` into a uint8 LR image, upscaled, stored as uint8 (MATLAB `im2uint8`), and compared
with the HR image on the BT.601 Y channel (grayscale images on their gray values) with `scale`
pixels cropped at each border. The reported numbers are means over the images of a folder.

    srgan-jax evaluate --bicubic benchmarks/Set5 benchmarks/Set14
    srgan-jax evaluate --model model.msgpack benchmarks/Set5 --json results.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from srgan_jax import image_io, metrics
from srgan_jax.imresize import degrade, im2uint8, imresize, modcrop

IMAGE_SUFFIXES = frozenset(image_io.FILE_FORMATS)

UpscaleFn = Callable[[np.ndarray], np.ndarray]
"""LR float image in [0, 1], (H, W, 3) or (H, W) -> SR float image in [0, 1], scale x larger."""


def bicubic_upscaler(scale: int) -> UpscaleFn:
    """The bicubic baseline: MATLAB's `imresize(uint8(lr), scale, 'bicubic')`, as a float image.

    The LR image is taken to 8 bits first, as the stored LR files of the benchmarks are (lossless
    for the LR images `evaluate_folder` makes), and resized in MATLAB's uint8 arithmetic.
    """

    def upscale(lr: np.ndarray) -> np.ndarray:
        return imresize(im2uint8(lr), scale=scale).astype(np.float64) / 255.0

    return upscale


def gray_via_rgb(upscaler: UpscaleFn) -> UpscaleFn:
    """Lets an RGB-only upscaler (a model) take grayscale input.

    The gray image is repeated into three channels, and the SR result is brought back to gray with
    BT.601 luma weights, so that a grayscale benchmark image is still measured on gray values.
    """

    def upscale(lr: np.ndarray) -> np.ndarray:
        if lr.ndim == 3:
            return upscaler(lr)
        sr = np.asarray(upscaler(np.repeat(lr[..., None], 3, axis=-1)), dtype=np.float64)
        return sr @ metrics.LUMA_WEIGHTS

    return upscale


def read_hr(path: pathlib.Path) -> np.ndarray:
    """An HR image as 8 bits: (H, W) uint8 for grayscale files, (H, W, 3) uint8 otherwise.

    Grayscale stays grayscale so it is measured on its gray values; alpha is dropped.
    """
    pixels = image_io.to_uint8(image_io.read_image(path).pixels)
    return pixels if pixels.ndim == 2 else np.ascontiguousarray(pixels[..., :3])


def list_images(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """The image files directly inside `folder`, sorted by name; an error if there are none."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    paths = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ValueError(f"dataset folder {folder} contains no images ({suffixes})")
    return paths


def evaluate_folder(
    hr_dir: str | pathlib.Path,
    upscaler: UpscaleFn,
    scale: int = 4,
    border: int | None = None,
    save_dir: str | pathlib.Path | None = None,
) -> dict[str, Any]:
    """Evaluates `upscaler` on every image of `hr_dir`; returns per-image and mean PSNR/SSIM.

    `border` defaults to `scale`. With `save_dir`, each SR image is written there as 8-bit PNG
    under its HR file's name. Returns {'dataset', 'scale', 'border', 'num_images', 'psnr', 'ssim',
    'images': [{'name', 'psnr', 'ssim'}, ...]}.
    """
    hr_dir = pathlib.Path(hr_dir)
    border = scale if border is None else border
    paths = list_images(hr_dir)
    if save_dir is not None:
        save_dir = pathlib.Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for path in paths:
        hr = modcrop(read_hr(path), scale)
        lr = degrade(hr, scale).astype(np.float64) / 255.0
        sr = im2uint8(upscaler(lr))
        if sr.shape != hr.shape:
            raise ValueError(
                f"{path}: SR image is shaped {sr.shape} but the (modcropped) HR image {hr.shape}"
            )
        if save_dir is not None:
            image_io.write_image(save_dir / f"{path.stem}.png", sr)
        sr01, hr01 = sr / 255.0, hr / 255.0
        images.append(
            {
                "name": path.name,
                "psnr": metrics.psnr(sr01, hr01, border=border),
                "ssim": metrics.ssim(sr01, hr01, border=border),
            }
        )
    return {
        "dataset": hr_dir.name,
        "scale": scale,
        "border": border,
        "num_images": len(images),
        "psnr": float(np.mean([r["psnr"] for r in images])),
        "ssim": float(np.mean([r["ssim"] for r in images])),
        "images": images,
    }


def markdown_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """One row per dataset, a PSNR and an SSIM column per method ('bicubic', 'model', ...)."""
    methods = list(results)
    header = ["dataset", "images"] + [f"{m} {k}" for m in methods for k in ("PSNR", "SSIM")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rows in zip(*results.values(), strict=True):
        cells = [rows[0]["dataset"], str(rows[0]["num_images"])]
        cells += [f"{r['psnr']:.2f} | {r['ssim']:.4f}" for r in rows]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load_model(args: argparse.Namespace) -> Any:
    from srgan_jax.upscaling.inference import (
        Upscaler,  # lazy: bicubic evaluation needs no model stack
    )

    return Upscaler.from_path(args.model or args.workdir, dtype=args.dtype)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srgan-jax evaluate",
        description="Y-channel PSNR/SSIM (border = scale) on folders of HR images, with MATLAB "
        "bicubic degradation; a model is shown next to the bicubic baseline.",
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET_DIR", help="folders of HR images")
    method = parser.add_mutually_exclusive_group(required=True)
    method.add_argument("--bicubic", action="store_true", help="evaluate the bicubic baseline")
    method.add_argument("--model", metavar="FILE", help="exported model file")
    method.add_argument("--workdir", metavar="DIR", help="training workdir (latest checkpoint)")
    parser.add_argument(
        "--scale", type=int, help="upscaling factor (default: the model's, or 4 for bicubic)"
    )
    parser.add_argument("--border", type=int, help="pixels cropped at each side (default: scale)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    parser.add_argument(
        "--save-dir", metavar="DIR", help="write SR images to DIR/<dataset>/ (the model's if any)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        methods: dict[str, UpscaleFn] = {}
        scale = args.scale or 4
        if not args.bicubic:
            model = _load_model(args)
            if args.scale is not None and args.scale != model.scale:
                raise ValueError(
                    f"--scale {args.scale} does not match the model's scale {model.scale}"
                )
            scale = model.scale
            methods["model"] = gray_via_rgb(model)
        methods = {"bicubic": bicubic_upscaler(scale), **methods}
        saved = next(reversed(methods))  # the model's images when there is a model
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
        for dataset in args.datasets:
            for name, upscaler in methods.items():
                save_dir = None
                if args.save_dir and name == saved:
                    save_dir = pathlib.Path(args.save_dir) / pathlib.Path(dataset).name
                results[name].append(
                    evaluate_folder(dataset, upscaler, scale, args.border, save_dir)
                )
    except (OSError, ValueError) as error:
        print(f"srgan-jax evaluate: error: {error}", file=sys.stderr)
        return 1
    border = scale if args.border is None else args.border
    table = markdown_table(results)
    print(f"x{scale}, Y-channel PSNR (dB) / SSIM, border {border}\n{table}")
    if args.markdown:
        pathlib.Path(args.markdown).write_text(table + "\n")
    if args.json:
        report = {"scale": scale, "border": border, "model": args.model or args.workdir}
        pathlib.Path(args.json).write_text(json.dumps({**report, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
