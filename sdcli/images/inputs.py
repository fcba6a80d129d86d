"""Input images and masks for img2img and inpaint: find them, read them safely, bring them to a size.

Input files come from anywhere (downloads, other tools, a folder of everything), so reading is defensive:
only PNG, JPEG and WebP are opened, whatever the file's name says; the declared size is checked before any
pixels are decoded (a 100-byte file can declare gigapixels); EXIF orientation is applied, so a phone photo
comes out the way it is shown; every colour mode becomes 8-bit RGB, with transparency flattened on white.
Any failure is an `InputError`: one line that names the file, never a traceback.

Pillow only (numpy for 16-bit grayscale): this module never imports torch.
"""

from __future__ import annotations

import glob
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from sdcli.errors import UsageError, first_line

FORMATS = ["PNG", "JPEG", "WEBP"]
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
WHITE = (255, 255, 255)  # what transparent input pixels become
BLACK = (0, 0, 0)  # what transparent mask pixels become: kept
RESIZE_MODES = ("crop", "fit", "stretch")
MULTIPLE = 8  # Stable Diffusion's VAEs downsample by 8
HASH_CHARS = 10  # A1111 shortens its hashes to 10 hex digits
# Pillow's own default; a test (or an embedding program) may lower Image.MAX_IMAGE_PIXELS, which wins.
DEFAULT_MAX_PIXELS = 89_478_485


class InputError(UsageError):
    """One unusable input (exit 2): the message names it. A run over many inputs reports it and goes on."""


@dataclass(frozen=True)
class InputImage:
    image: Image.Image  # RGB (or L for a mask), upright, fully decoded
    path: Path
    hash: str  # first 10 hex digits of the file's SHA-256

    @property
    def name(self) -> str:
        """The file name alone: metadata never records where a file was."""
        return self.path.name

    @property
    def record(self) -> dict[str, str]:
        return {"name": self.name, "hash": self.hash}


# -- finding inputs ------------------------------------------------------------------------------------------


def _is_image_name(path: Path) -> bool:
    # Hidden files are skipped: macOS "._x.png" resource forks and half-written ".x.png.tmp" files.
    return path.suffix.lower() in SUFFIXES and not path.name.startswith(".")


def expand(args: list[str]) -> tuple[list[Path], list[InputError]]:
    """Files, folders (their PNG/JPEG/WebP files, not recursive) and globs -> input files, in the order given,
    each once. Returns the files and one error per argument that gave none, so the caller can go on."""
    found: list[Path] = []
    problems: list[InputError] = []
    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and _is_image_name(p))
            if not files:
                problems.append(InputError(f"{arg}: folder has no PNG, JPEG or WebP images"))
        elif path.exists() or not any(c in arg for c in "*?["):
            # A file named explicitly is opened whatever its suffix: its content decides what it is.
            files = [path]
        else:
            matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and _is_image_name(Path(m))]
            if not files:
                problems.append(InputError(f"{arg}: no PNG, JPEG or WebP files match"))
        found.extend(files)
    unique: dict[Path, Path] = {}
    for file in found:
        unique.setdefault(file.resolve(), file)
    return list(unique.values()), problems


# -- reading -------------------------------------------------------------------------------------------------


def read_image(path: Path, *, background: tuple[int, int, int] = WHITE) -> InputImage:
    """Decode one PNG, JPEG or WebP file into upright 8-bit RGB, or raise one `InputError` line."""
    name = str(path)
    if not path.exists():
        raise InputError(f"{name}: no such file")
    if not path.is_file():
        raise InputError(f"{name}: not a file")
    try:
        with open(path, "rb") as handle:
            digest = _sha256(handle)
            if handle.tell() == 0:
                raise InputError(f"{name}: empty file (0 bytes)")
            handle.seek(0)
            image = _decode(handle, name, background)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    return InputImage(image=image, path=path, hash=digest[:HASH_CHARS])


def read_image_bytes(data: bytes, name: str) -> InputImage:
    """`read_image` for an image that came as bytes (an HTTP API's base64 `init_images`)."""
    import io

    if not data:
        raise InputError(f"{name}: empty image (0 bytes)")
    image = _decode(io.BytesIO(data), name, WHITE)
    return InputImage(image=image, path=Path(name), hash=hashlib.sha256(data).hexdigest()[:HASH_CHARS])


def read_mask(path: Path) -> InputImage:
    """A mask as 8-bit grayscale: white is repainted, black kept; transparent pixels count as black."""
    found = read_image(path, background=BLACK)
    return InputImage(image=found.image.convert("L"), path=found.path, hash=found.hash)


def _sha256(handle: Any) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _decode(handle: Any, name: str, background: tuple[int, int, int]) -> Image.Image:
    limit = Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS
    with warnings.catch_warnings():
        # Pillow's other warnings (palette transparency, odd EXIF) are about files we convert anyway;
        # a decompression-bomb warning, though, is a refusal here, not a note.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(handle, formats=FORMATS) as im:
                width, height = im.size
                # Checked on the header, before load() allocates width*height pixels.
                if width < 1 or height < 1:
                    raise InputError(f"{name}: declares an empty {width}x{height} image")
                if width * height > limit:
                    raise InputError(_too_large(name, width, height, limit))
                im.load()
                upright = ImageOps.exif_transpose(im)
                return to_rgb(upright, background)
        except InputError:
            raise
        except UnidentifiedImageError:
            raise InputError(f"{name}: not a PNG, JPEG or WebP image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{name}: declared size is too large (over {limit:,} pixels)") from None
        except Exception as exc:  # a damaged file can fail anywhere inside a decoder, in any way
            raise InputError(f"{name}: damaged or truncated image ({first_line(exc)})") from None


def _too_large(name: str, width: int, height: int, limit: int) -> str:
    return f"{name}: {width}x{height} is too large (over {limit:,} pixels); refused as a decompression bomb"


def to_rgb(im: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: palette, grayscale, CMYK, 16-bit; alpha flattened on `background`."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        # 16-bit grayscale PNGs: Pillow's convert() clips them to 255 (white); scale them down instead.
        import numpy as np

        wide = np.asarray(im).astype(np.float64)
        im = Image.fromarray((wide / 257).round().clip(0, 255).astype(np.uint8))
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if not has_alpha:
        return im.convert("RGB")
    rgba = im.convert("RGBA")
    flat = Image.new("RGB", rgba.size, background)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


# -- sizes ---------------------------------------------------------------------------------------------------


def check_resize(mode: str) -> str:
    if mode not in RESIZE_MODES:
        raise UsageError(f"--resize {mode!r} is not one of {', '.join(RESIZE_MODES)}")
    return mode


def target_size(size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """The size to generate: by default the input's own, trimmed down to a multiple of 8; with only one of
    width/height, the other follows the input's aspect ratio (to the nearest multiple of 8)."""
    in_w, in_h = size
    if width is None and height is None:
        width, height = in_w // MULTIPLE * MULTIPLE, in_h // MULTIPLE * MULTIPLE
    elif height is None:
        assert width is not None
        height = max(MULTIPLE, round(width * in_h / in_w / MULTIPLE) * MULTIPLE)
    elif width is None:
        width = max(MULTIPLE, round(height * in_w / in_h / MULTIPLE) * MULTIPLE)
    return width, height


def check_size(item: InputImage, width: int | None, height: int | None) -> tuple[int, int]:
    w, h = target_size(item.image.size, width, height)
    if w < MULTIPLE or h < MULTIPLE:
        in_w, in_h = item.image.size
        raise InputError(f"{item.path}: {in_w}x{in_h} is too small; inputs need at least 8x8 pixels")
    return w, h


def conform(
    image: Image.Image,
    width: int | None,
    height: int | None,
    mode: str = "crop",
    fill: int | tuple[int, int, int] = WHITE,
) -> Image.Image:
    """Bring an image to the generation size.

    No width/height: crop the 0-7 extra pixels off each dimension, centred, and resample nothing, so kept
    pixels stay exact. Otherwise `crop` scales to cover the size and cuts the overflow (centred), `fit`
    scales to fit inside and pads the margins with `fill`, `stretch` scales each axis on its own.
    """
    size = target_size(image.size, width, height)
    if image.size == size:
        return image
    if width is None and height is None:
        left, top = (image.width - size[0]) // 2, (image.height - size[1]) // 2
        return image.crop((left, top, left + size[0], top + size[1]))
    lanczos = Image.Resampling.LANCZOS
    if mode == "stretch":
        return image.resize(size, lanczos)
    if mode == "fit":
        return ImageOps.pad(image, size, method=lanczos, color=fill)
    return ImageOps.fit(image, size, method=lanczos)


def prepare_mask(mask: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    """A mask drawn at another size is stretched onto the image it belongs to (before any resize)."""
    return mask if mask.size == image_size else mask.resize(image_size, Image.Resampling.LANCZOS)


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """A1111's mask blur: a Gaussian blur of `radius` pixels; the repainted area fades into the kept one."""
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def paste_back(original: Image.Image, mask: Image.Image) -> Any:
    """Build the step that puts the kept (black) area of `original` back over a generated image, blended
    through the (blurred) mask: the model redraws the whole frame, but only the white area should change."""

    def finish(generated: Image.Image) -> Image.Image:
        return Image.composite(generated, original, mask)

    return finish


# -- whole runs ----------------------------------------------------------------------------------------------


def collect(
    args: list[str], width: int | None = None, height: int | None = None
) -> tuple[list[Path], list[InputError]]:
    """Every usable input among `args`, and one error per unusable one, found before any model loads.

    Each file is decoded in full here (a truncated file fails only when its pixels are read) and then let go,
    so a folder of any size fits in memory; the run reads each file again when its turn comes.
    """
    files, problems = expand(args)
    ready = []
    for path in files:
        try:
            check_size(read_image(path), width, height)
        except InputError as exc:
            problems.append(exc)
        else:
            ready.append(path)
    return ready, problems


def prepare_inpaint(
    image: Image.Image,
    mask: Image.Image,
    width: int | None,
    height: int | None,
    resize: str = "crop",
    blur: int = 4,
) -> tuple[Image.Image, Image.Image]:
    """The image and its mask at the generation size, the mask softened by `blur`. The mask follows the
    image through the same crop or padding; `fit`'s margins are black in the mask, so they are kept."""
    mask = conform(prepare_mask(mask, image.size), width, height, resize, fill=0)
    return conform(image, width, height, resize), blur_mask(mask, blur)
