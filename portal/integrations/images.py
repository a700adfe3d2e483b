"""Uploaded evidence made safe to keep: images re-encoded by Pillow, PDFs checked for active content.

``prepare_evidence`` is what a service calls with the bytes a borrower sent: it applies the rules in
``workflows.evidence`` and returns the bytes to store. An image is decoded and encoded afresh, turned
upright by its EXIF orientation, and written with no metadata at all (EXIF with its GPS position, XMP,
comments, text chunks, ICC profiles: colours are converted to sRGB first), so nothing the phone wrote
about the borrower survives, and nothing hidden in the original file does either. A PDF is kept as
it came, once ``check_pdf_body`` has found no scripts, actions or embedded files in it.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps

from workflows.errors import DomainError
from workflows.evidence import HEAD_BYTES, FileKind, check_pdf_body, check_upload, display_name

# Bigger than any phone's normal photo (12-24 megapixels, 48 in a high-resolution mode is refused),
# small enough that decoding one costs at most ~160 MB. Checked on the declared size, before decoding.
MAX_PIXELS = 40_000_000
JPEG_QUALITY = 85
_PILLOW_FORMATS = {FileKind.JPEG: "JPEG", FileKind.PNG: "PNG"}
# What Pillow raises on a file that is broken, truncated or lying about itself.
_BROKEN = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


@dataclass(frozen=True)
class PreparedEvidence:
    kind: FileKind
    content_type: str
    display_name: str
    data: bytes  # the bytes to store: re-encoded for an image, as sent for a PDF
    size: int
    sha256: str  # of `data`, hex


def _unreadable() -> DomainError:
    return DomainError(
        "evidence_unreadable",
        "The file could not be read: it may be damaged or incomplete. Try saving or scanning it again.",
    )


def _too_many_pixels() -> DomainError:
    return DomainError(
        "evidence_image_too_large",
        "The picture is too large: at most {limit} megapixels are accepted. "
        "Take it at a lower resolution, or send a screenshot of it.",
        limit=MAX_PIXELS // 1_000_000,
    )


def _open(data: bytes, kind: FileKind) -> Image.Image:
    """Open the image as its sniffed format only, refusing huge declared sizes before any decoding.

    Pillow refuses more than 2 x ``Image.MAX_IMAGE_PIXELS`` itself (DecompressionBombError) and warns
    above it (an error where warnings are errors, as in the tests); our own, lower limit comes next.
    The global ``MAX_IMAGE_PIXELS`` is left alone: other Pillow users (PDF rendering) share it.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[kind]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels() from None
    except _BROKEN:
        raise _unreadable() from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise _unreadable()
    if width * height > MAX_PIXELS:
        raise _too_many_pixels()
    return image


def _to_srgb(image: Image.Image, mode: str) -> Image.Image:
    """The image in ``mode`` ("RGB", "RGBA" or "L"), colours converted from its ICC profile to sRGB
    when it has one that LittleCMS understands; plainly converted otherwise."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK") and mode in ("RGB", "RGBA"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            target = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, target, outputMode=mode)
        except (ImageCms.PyCMSError, OSError, ValueError):
            converted = None
        if converted is not None:
            return converted
    return image if image.mode == mode else image.convert(mode)


def _output_mode(image: Image.Image, kind: FileKind) -> str:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if kind is FileKind.JPEG:
        return "L" if image.mode in ("L", "1") else "RGB"
    if image.mode in ("1", "L") and not has_alpha:
        return "L"
    if image.mode in ("I;16", "I") and not has_alpha:
        return "I;16"  # 16-bit grey (scans): PNG keeps it
    return "RGBA" if has_alpha else "RGB"


def reencode(data: bytes, kind: FileKind) -> bytes:
    """A JPEG or PNG decoded and encoded afresh: upright, in a plain mode, with no metadata.

    Broken or truncated files raise DomainError ``evidence_unreadable``, images over ``MAX_PIXELS``
    ``evidence_image_too_large``.
    """
    if kind not in _PILLOW_FORMATS:
        raise ValueError(f"only images are re-encoded, not {kind}")
    with _open(data, kind) as probe:
        try:
            probe.verify()  # checksums and structure, without decoding pixels
        except _BROKEN:
            raise _unreadable() from None
    with _open(data, kind) as image:
        try:
            image.load()  # truncated data raises here (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
        except _BROKEN:
            raise _unreadable() from None
        try:
            upright = ImageOps.exif_transpose(image)
        except (*_BROKEN, KeyError, TypeError):
            upright = image.copy()  # EXIF too broken to read: the pixels are fine, the EXIF goes anyway
        clean = _to_srgb(upright, _output_mode(upright, kind))
    # A fresh info dict: Pillow carries the JPEG comment and the PNG ICC profile from `info` on save.
    clean.info = {}
    out = io.BytesIO()
    if kind is FileKind.JPEG:
        clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True, icc_profile=None, comment=None)
    else:
        clean.save(out, format="PNG", optimize=True, icc_profile=None)
    return out.getvalue()


def prepare_evidence(filename: str, data: bytes, files_already: int) -> PreparedEvidence:
    """Check an upload and make the bytes to store, or raise the DomainError that refuses it.

    Runs ``check_upload`` (count, name, size, kind by magic bytes), then ``check_pdf_body`` for a PDF
    or ``reencode`` for an image. Nothing is stored here: on a refusal there is nothing to undo.
    """
    kind = check_upload(filename, len(data), data[:HEAD_BYTES], files_already)
    if kind is FileKind.PDF:
        check_pdf_body(data)
        stored = data
    else:
        stored = reencode(data, kind)
    return PreparedEvidence(
        kind=kind,
        content_type=kind.content_type,
        display_name=display_name(filename, kind),
        data=stored,
        size=len(stored),
        sha256=hashlib.sha256(stored).hexdigest(),
    )
