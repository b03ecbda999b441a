"""Image files in and out: 8-bit RGB for training, full fidelity for upscaling real images.

Pillow and numpy only (no TensorFlow). Two readers:

* `read_rgb(path)` gives the uint8 (H, W, 3) RGB array training and evaluation want, whatever the
  file holds (gray, palette, RGBA, CMYK, 16-bit, float, EXIF-rotated).
* `read_image(path)` keeps what the file holds, for the upscale CLI: 8 or 16 bits, gray or colour,
  alpha, and the ICC profile.

Pillow has no 16-bit RGB(A) mode: it reads 16-bit colour PNG/TIFF files by keeping only the high
byte of each sample. `read_image` recovers the full samples by decoding such a file a second time
with the byte order of its raw mode swapped (which yields the low bytes), so the C decoders still do
all the work. For the same reason `write_image` writes 16-bit PNG and TIFF files with the small
encoders below (zlib, PNG Paeth filter / TIFF deflate with horizontal predictor).

Every failure to read a file raises `ImageReadError`, whose message names the file. Folders
contribute every raster format Pillow knows (`scan_images`, which also names what it leaves out:
a sub-folder it cannot read, a pipe named like an image); files are written through
`output_paths.write_output` (whole or not at all, never over a file that appeared meanwhile unless
asked to).
"""
from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import stat
import struct
import sys
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from srgan_jax.output_paths import write_output

EXIF_ORIENTATION = 0x0112
FILE_FORMATS = {  # file extension -> Pillow format name, for `write_image`
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
WRITABLE_EXTENSIONS = frozenset(FILE_FORMATS)
# Pillow formats registered for extensions that are not raster images (stubs that need a plugin
# handler, vector and document formats, metadata): folders do not contribute such files.
_NOT_RASTER = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS", "PDF", "IPTC", "PALM"})
# Photo formats this Pillow may have no decoder for: listed all the same, so that such a file in
# a folder gets a line saying it cannot be read instead of being passed over in silence.
_PHOTO_EXTENSIONS = frozenset({".heic", ".heif", ".avif", ".jxl"})
# The image files folders contribute (extension, any case): every raster format Pillow knows.
IMAGE_EXTENSIONS = frozenset(
    {ext for ext, name in Image.registered_extensions().items() if name not in _NOT_RASTER}
    | _PHOTO_EXTENSIONS)
_EIGHT_BIT_ONLY = frozenset({"JPEG", "WEBP", "BMP"})

# Raw modes in which Pillow keeps only the high byte of 16-bit samples, and the byte-order swap
# that makes the same decoder return the low bytes instead ("N" is native order).
_WIDE_RAWMODES = frozenset({f"{mode};16{order}" for mode in ("RGB", "RGBA") for order in "BLN"})
_SWAPPED_ORDER = {"16B": "16L", "16L": "16B", "16N": "16B" if sys.byteorder == "little" else "16L"}


class ImageReadError(ValueError):
    """A file that is not a readable image; the message names the file."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """An image as stored in its file.

    `pixels` is uint8 or uint16, shaped (H, W) for gray, (H, W, 2) for gray with alpha (Pillow's
    LA), (H, W, 3) for RGB or (H, W, 4) for RGBA.
    `icc_profile` is the embedded colour profile (None if absent, or if the pixels were converted to
    another colour space, e.g. from CMYK); `format` is Pillow's format name ('PNG', 'JPEG', ...).
    """

    pixels: np.ndarray
    icc_profile: bytes | None = None
    format: str | None = None
    path: str | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def has_alpha(self) -> bool:
        return self.pixels.ndim == 3 and self.pixels.shape[2] in (2, 4)

    @property
    def is_gray(self) -> bool:
        return self.pixels.ndim == 2 or self.pixels.shape[2] == 2


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether `path` names an image file by its extension (`IMAGE_EXTENSIONS`, any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def is_writable_image(path: str | os.PathLike) -> bool:
    """Whether `write_image` writes the format `path`'s extension names (any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in WRITABLE_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """The image files of a folder, sorted by path, and one line for each thing left out: a
    sub-folder that could not be read, an image name that is not a regular file (a pipe)."""

    files: list[pathlib.Path]
    problems: list[str]


def scan_images(folder: str | os.PathLike, *, recursive: bool = True) -> FolderScan:
    """The image files (`is_image_file`) in `folder`, and its sub-folders when `recursive`.

    Raises `NotADirectoryError` (an `OSError`) naming `folder` if it is not a folder. Symbolic
    links are followed, to files and to folders; a folder reached a second time (a link cycle, or
    two links to one folder) is named and left out.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: no such folder")
    files, problems = [], []
    listed = {os.path.realpath(root): root}  # each folder, by where it really is

    def unreadable(error: OSError) -> None:
        problems.append(f"{error.filename}: cannot read this folder ({error.strerror}); "
                        "the images in it were left out")

    for directory, subfolders, names in os.walk(root, onerror=unreadable, followlinks=True):
        if not recursive:
            subfolders.clear()
        for name in list(subfolders):
            path = pathlib.Path(directory, name)
            real = os.path.realpath(path)
            if real in listed:
                subfolders.remove(name)
                problems.append(f"{path}: the folder {listed[real]} again (through a symbolic "
                                "link); left out")
            listed.setdefault(real, path)
        for name in names:
            path = pathlib.Path(directory, name)
            if not is_image_file(path):
                continue
            kind = "a broken symbolic link" if not path.exists() else special_file_kind(path)
            if kind:
                problems.append(f"{path}: {kind}, not an image file; left out")
            else:
                files.append(path)
    return FolderScan(sorted(files), sorted(problems))


def special_file_kind(path: pathlib.Path) -> str | None:
    """What `path` is when it is not a regular file ('a named pipe', ...), else None."""
    mode = path.stat().st_mode
    kinds = {stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((kind for test, kind in kinds.items() if test(mode)), None)


def list_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[pathlib.Path]:
    """The image files in `folder` (and its sub-folders when `recursive`), sorted by path.

    Raises `NotADirectoryError` (an `OSError`) naming `folder` if it is not a folder, and an
    `OSError` with the first line of `scan_images`' problems if anything could not be listed: a
    dataset read in part would give numbers for other images than the ones asked for. An empty
    list means the folder holds no image files.
    """
    scan = scan_images(folder, recursive=recursive)
    if scan.problems:
        more = f" (and {len(scan.problems) - 1} more)" if len(scan.problems) > 1 else ""
        raise OSError(scan.problems[0] + more)
    return scan.files


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint8 copy of uint8/uint16 pixels; 16-bit values are scaled by 1/257 and rounded."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype != np.uint16:
        raise TypeError(f"expected uint8 or uint16 pixels, got {pixels.dtype}")
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) view of gray, gray + alpha, RGB or RGBA pixels: gray is repeated, alpha dropped."""
    if pixels.ndim == 2 or pixels.shape[2] == 2:
        gray = pixels if pixels.ndim == 2 else pixels[:, :, 0]
        return np.repeat(gray[:, :, None], 3, axis=2)
    return pixels[:, :, :3]


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as uint8 (H, W, 3) RGB, upright per its EXIF orientation.

    Gray is repeated into three channels, alpha is dropped (not composited), palette and CMYK are
    converted, and 16-bit or float samples are scaled to 8 bits (see `to_uint8`, `read_image`).
    """
    return np.ascontiguousarray(to_rgb(to_uint8(read_image(path).pixels)))


def read_image(path: str | os.PathLike, *, single_frame: bool = False) -> ImageData:
    """The image at `path` at full fidelity (see `ImageData`), upright per its EXIF orientation.

    With `single_frame`, animated and multi-page files are refused (`ImageReadError` with their
    frame count) instead of read as their first frame.

    Mode conversions: 1-bit -> gray; palette -> RGB, or RGBA when it has transparency; gray or RGB
    with a transparent colour (8 or 16 bits) -> RGBA; LA stays gray + alpha (premultiplied La is
    un-premultiplied); CMYK (through its ICC profile
    when it has one), YCbCr and other colour spaces -> RGB; 32-bit integer samples are clipped to
    16 bits; float samples are read as [0, 1] and quantised to 16 bits. The file is decoded
    completely, so a truncated file fails here rather than later.
    """
    name = os.fspath(path)
    try:
        with Image.open(name) as image:
            frames = int(getattr(image, "n_frames", 1))
            if single_frame and frames > 1:
                raise ImageReadError(
                    f"{name}: animated or multi-page image ({frames} frames); srgan-jax upscales "
                    "single images: extract the frames first (e.g. ffmpeg -i in.gif frame%04d.png)")
            tiles = list(image.tile)
            image.load()
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if _needs_low_bytes(image.mode, tiles):
                pixels = _with_low_bytes(name, tiles, np.asarray(image))
                pixels = _colour_key_to_alpha(pixels, image.info.get("transparency"))
                icc_profile = image.info.get("icc_profile")
            else:
                pixels, icc_profile = _pixels(image, name)
            file_format = image.format
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError
            ) as error:
        reason, extension = str(error), os.path.splitext(name)[1].lower()
        if extension not in Image.registered_extensions() and os.path.isfile(name):
            reason = f"this Pillow has no decoder for {extension} files; convert it to PNG first"
        raise ImageReadError(f"{name}: cannot read image ({reason})") from error
    pixels = np.ascontiguousarray(apply_orientation(pixels, orientation))
    return ImageData(pixels, _matching_icc(icc_profile, pixels), file_format, name)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels stored with EXIF orientation 1..8, turned upright like `ImageOps.exif_transpose`."""
    transforms: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: a[::-1].swapaxes(0, 1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: a[:, ::-1].swapaxes(0, 1),
    }
    return transforms.get(orientation, lambda a: a)(pixels)


def _pixels(image: Image.Image, name: str) -> tuple[np.ndarray, bytes | None]:
    """Array and ICC profile of a loaded Pillow image, converted per `read_image`."""
    mode = image.mode
    icc_profile = image.info.get("icc_profile")
    if mode.startswith("I;16"):
        gray = np.asarray(image).astype(np.uint16)
        return _colour_key_to_alpha(gray, image.info.get("transparency")), icc_profile
    if mode == "I":
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16), icc_profile
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageReadError(f"{name}: float image with NaN or infinite samples")
        return np.round(np.clip(values, 0.0, 1.0) * 65535.0).astype(np.uint16), icc_profile
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(image, icc_profile)), None
    if image.has_transparency_data and mode not in ("RGBA", "LA", "La", "RGBa", "PA"):
        # Palette or colour-keyed gray/RGB: Pillow's conversion applies the transparency.
        return np.asarray(image.convert("RGBA")), icc_profile
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(image), icc_profile
    if mode in ("1", "P"):
        return np.asarray(image.convert("L" if mode == "1" else "RGB")), icc_profile
    if mode in ("LA", "La"):
        return np.asarray(image.convert("LA")), icc_profile
    if mode in ("RGBa", "PA"):
        return np.asarray(image.convert("RGBA")), icc_profile
    try:
        return np.asarray(image.convert("RGB")), None  # YCbCr, LAB, HSV, RGBX
    except ValueError as error:
        raise ImageReadError(f"{name}: unsupported image mode {mode!r}") from error


def _colour_key_to_alpha(pixels: np.ndarray, key: int | tuple | None) -> np.ndarray:
    """RGBA of 16-bit gray/RGB pixels whose file marks one colour transparent (PNG tRNS)."""
    if key is None or (pixels.ndim == 3 and pixels.shape[2] == 4):
        return pixels
    rgb = to_rgb(pixels)
    opaque = np.any(rgb != np.asarray(key, dtype=np.int64).reshape(-1)[:3], axis=-1)
    alpha = np.where(opaque, np.iinfo(pixels.dtype).max, 0).astype(pixels.dtype)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def _cmyk_to_rgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """RGB of a CMYK image, colour-managed to sRGB when the file carries a CMYK profile."""
    if icc_profile:
        try:
            from PIL import ImageCms  # needs Pillow built with littlecms
        except ImportError:
            return image.convert("RGB")
        try:
            return ImageCms.profileToProfile(
                image, ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)),
                ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: fall back to Pillow's naive conversion
    return image.convert("RGB")


def _needs_low_bytes(mode: str, tiles: list) -> bool:
    """Whether Pillow decoded a 16-bit colour file into 8-bit samples (see the module docstring)."""
    return mode in ("RGB", "RGBA") and bool(tiles) and all(
        _rawmode(tile) in _WIDE_RAWMODES or _rawmode(tile) == "LA;16B" for tile in tiles)


def _rawmode(tile) -> str:
    return tile.args if isinstance(tile.args, str) else tile.args[0]


def _with_rawmode(tile, rawmode: str):
    args = rawmode if isinstance(tile.args, str) else (rawmode, *tile.args[1:])
    return tile._replace(args=args)


def _with_low_bytes(name: str, tiles: list, high: np.ndarray) -> np.ndarray:
    """uint16 samples of a 16-bit RGB(A)/LA file whose high bytes Pillow decoded into `high`."""
    if _rawmode(tiles[0]) == "LA;16B":  # PNG gray+alpha: decode the raw bytes as 8-bit RGBA
        raw = _decode_with(name, [_with_rawmode(t, "RGBA") for t in tiles]).astype(np.uint16)
        gray, alpha = raw[..., 0] << 8 | raw[..., 1], raw[..., 2] << 8 | raw[..., 3]
        return np.stack([gray, alpha], axis=-1)
    swapped = [_with_rawmode(t, _rawmode(t)[:-3] + _SWAPPED_ORDER[_rawmode(t)[-3:]]) for t in tiles]
    low = _decode_with(name, swapped)
    return high.astype(np.uint16) << 8 | low


def _decode_with(name: str, tiles: list) -> np.ndarray:
    with Image.open(name) as image:
        image.tile = tiles
        image.load()
        return np.asarray(image)


def _matching_icc(icc_profile: bytes | None, pixels: np.ndarray) -> bytes | None:
    """The profile if its colour space (ICC header bytes 16-19) fits the pixels, else None."""
    if not icc_profile or len(icc_profile) < 20:
        return None
    space = icc_profile[16:20]
    return icc_profile if space == (b"GRAY" if pixels.ndim == 2 else b"RGB ") else None


def write_image(
    path: str | os.PathLike,
    image: ImageData | np.ndarray,
    *,
    icc_profile: bytes | None = None,
    quality: int = 95,
    overwrite: bool = True,
) -> None:
    """Writes uint8/uint16 gray, gray + alpha, RGB or RGBA pixels to `path`, in the format its
    extension names.

    PNG and TIFF keep 16 bits, gray + alpha and alpha (16-bit gray + alpha TIFF as RGBA, which
    Pillow can read back). JPEG, WebP and BMP are 8-bit: 16-bit samples are scaled with
    `to_uint8`; JPEG also drops alpha; WebP and BMP, which have no gray + alpha, take it as RGBA.
    `icc_profile` (default: the one `image` carries) is embedded where the format allows and its
    colour space fits the pixels. `quality` applies to JPEG and WebP. The file appears whole or
    not at all, through `output_paths.write_output`: without `overwrite`, an existing `path` is
    kept (`OutputExistsError`), even one that appears while this call runs.
    """
    name = os.fspath(path)
    file_format = FILE_FORMATS.get(os.path.splitext(name)[1].lower())
    if file_format is None:
        raise ValueError(f"{name}: unsupported output extension; use one of {sorted(FILE_FORMATS)}")
    if isinstance(image, ImageData):
        icc_profile = image.icc_profile if icc_profile is None else icc_profile
        image = image.pixels
    pixels = _check_pixels(np.asarray(image), name)
    if file_format in _EIGHT_BIT_ONLY:
        pixels = to_uint8(pixels)
        if file_format == "JPEG" and pixels.ndim == 3:
            pixels = pixels[:, :, 0] if pixels.shape[2] == 2 else pixels[:, :, :3]
        elif pixels.ndim == 3 and pixels.shape[2] == 2:
            pixels = np.dstack([to_rgb(pixels), pixels[:, :, 1]])
    elif file_format == "TIFF" and pixels.dtype == np.uint16 and pixels.ndim == 3 \
            and pixels.shape[2] == 2:  # a layout Pillow, and so `read_image`, cannot read
        pixels = np.dstack([to_rgb(pixels), pixels[:, :, 1]])
    icc_profile = _matching_icc(icc_profile, pixels)
    if file_format == "PNG" and pixels.dtype == np.uint16:
        data = encode_png16(pixels, icc_profile)
    elif file_format == "TIFF":
        data = encode_tiff(pixels, icc_profile)
    else:
        buffer = io.BytesIO()
        options = {"quality": quality} if file_format in ("JPEG", "WEBP") else {}
        if icc_profile and file_format != "BMP":
            options["icc_profile"] = icc_profile
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format=file_format, **options)
        data = buffer.getvalue()
    write_output(name, data, overwrite=overwrite)


def _check_pixels(pixels: np.ndarray, name: str) -> np.ndarray:
    if pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"{name}: pixels must be uint8 or uint16, got {pixels.dtype}")
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (2, 3, 4))):
        raise ValueError(f"{name}: pixels must be shaped (H, W), (H, W, 2), (H, W, 3) or "
                         f"(H, W, 4), not {pixels.shape}")
    if min(pixels.shape[:2]) < 1:
        raise ValueError(f"{name}: empty image of shape {pixels.shape}")
    return pixels


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png16(pixels: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """A 16-bit PNG of uint16 gray (H, W), RGB (H, W, 3) or RGBA (H, W, 4) pixels.

    Every row uses the Paeth filter (computed with numpy), IDAT is split into 1 MiB chunks and the
    ICC profile, if given, goes into an iCCP chunk.
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = pixels.astype(">u2").reshape(height, width * channels).view(np.uint8)
    bpp = 2 * channels
    left = np.zeros_like(raw)
    left[:, bpp:] = raw[:, :-bpp]
    up = np.zeros_like(raw)
    up[1:] = raw[:-1]
    up_left = np.zeros_like(raw)
    up_left[:, bpp:] = up[:, :-bpp]
    a, b, c = (x.astype(np.int16) for x in (left, up, up_left))
    estimate = a + b - c
    pa, pb, pc = np.abs(estimate - a), np.abs(estimate - b), np.abs(estimate - c)
    predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    filtered = (raw.astype(np.int16) - predictor).astype(np.uint8)
    rows = np.concatenate([np.full((height, 1), 4, np.uint8), filtered], axis=1).tobytes()
    compressed = zlib.compress(rows, 6)
    out = [b"\x89PNG\r\n\x1a\n",
           _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))]
    if icc_profile:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile)))
    step = 1 << 20
    out.extend(_png_chunk(b"IDAT", compressed[i:i + step]) for i in range(0, len(compressed), step))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def encode_tiff(pixels: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """A little-endian baseline TIFF of uint8/uint16 gray, gray + alpha, RGB or RGBA pixels.

    One strip, Adobe deflate compression with the horizontal-differencing predictor, unassociated
    alpha, and the ICC profile (tag 34675) if given.
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    bits = pixels.dtype.itemsize * 8
    samples = pixels.reshape(height, width, channels).astype(pixels.dtype.newbyteorder("<"))
    differences = samples.copy()
    differences[:, 1:] -= samples[:, :-1]  # predictor 2, modulo 2**bits
    strip = zlib.compress(differences.tobytes(), 6)

    short, long_, undefined = 3, 4, 7
    tags = [
        (256, long_, [width]),
        (257, long_, [height]),
        (258, short, [bits] * channels),
        (259, short, [8]),  # Adobe deflate
        (262, short, [1 if channels <= 2 else 2]),  # BlackIsZero / RGB
        (273, long_, [0]),  # StripOffsets, patched below
        (277, short, [channels]),
        (278, long_, [height]),
        (279, long_, [len(strip)]),
        (284, short, [1]),  # chunky
        (317, short, [2]),  # horizontal predictor
    ]
    if channels in (2, 4):
        tags.append((338, short, [2]))  # unassociated alpha
    if icc_profile:
        tags.append((34675, undefined, icc_profile))

    ifd_size = 2 + 12 * len(tags) + 4
    extra = bytearray()  # values longer than 4 bytes, stored after the IFD
    entries = []
    for tag, kind, values in tags:
        payload = (bytes(values) if kind == undefined
                   else struct.pack(f"<{len(values)}{'H' if kind == short else 'I'}", *values))
        if len(payload) <= 4:
            field = payload.ljust(4, b"\0")
        else:
            field = struct.pack("<I", 8 + ifd_size + len(extra))
            extra += payload + b"\0" * (len(payload) % 2)
        entries.append((tag, kind, len(values), field))
    strip_offset = 8 + ifd_size + len(extra)
    ifd = bytearray(struct.pack("<H", len(entries)))
    for tag, kind, count, field in entries:
        if tag == 273:
            field = struct.pack("<I", strip_offset)
        ifd += struct.pack("<HHI", tag, kind, count) + field
    ifd += struct.pack("<I", 0)  # no next IFD
    return b"II*\0" + struct.pack("<I", 8) + bytes(ifd) + bytes(extra) + strip
