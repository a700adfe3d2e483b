"""Evidence files for real: Pillow re-encodes what phones send, a local directory keeps it, and a corpus
of bad uploads, made here byte by byte, is refused one by one with nothing stored."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from portal.config import ROOT, ConfigError
from portal.integrations.images import MAX_PIXELS, PreparedEvidence, prepare_evidence, reencode
from portal.integrations.storage import (
    LocalStorage,
    StorageKeyError,
    evidence_directory,
    storage_from_config,
)
from workflows.errors import DomainError
from workflows.evidence import MAX_FILE_BYTES, MAX_FILES_PER_CASE, FileKind

GPS = ExifTags.IFD.GPSInfo
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: object) -> bytes:
    image = Image.new(mode, size, "red" if mode in ("RGB", "RGBA", "P") else 128)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def _exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 15"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(GPS)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (31.0, 13.0, 45.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (121.0, 28.0, 12.0)
    return exif


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge picture: a decompression bomb's calling card."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _zip(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, content)
    return out.getvalue()


def _png_with_bad_crc() -> bytes:
    data = bytearray(_image_bytes("PNG"))
    data[29] ^= 0xFF  # the IHDR checksum
    return bytes(data)


# ---- metadata goes, pixels stay -------------------------------------------------------------------


def test_a_jpeg_loses_its_exif_and_gps_position_when_re_encoded() -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(
        out, format="JPEG", exif=_exif_with_gps(), comment=b"taken at home", xmp=b"<x:xmpmeta>me</x:xmpmeta>"
    )
    original = out.getvalue()
    with Image.open(io.BytesIO(original)) as before:  # the test file really carries them
        assert before.getexif().get_ifd(GPS)[ExifTags.GPS.GPSLatitudeRef] == "N"
        assert "comment" in before.info and "xmp" in before.info

    cleaned = reencode(original, FileKind.JPEG)

    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.format == "JPEG"
        assert after.size == (64, 48)
        assert not after.getexif()
        assert not after.getexif().get_ifd(GPS)
        assert not {"exif", "comment", "xmp", "icc_profile"} & set(after.info)
    for trace in (b"Exif", b"PhoneMaker", b"taken at home", b"xmpmeta", b"http://ns.adobe.com/xap"):
        assert trace not in cleaned


def test_the_exif_orientation_is_applied_before_it_is_dropped() -> None:
    # Wide picture, red left half and blue right half, "rotate 90 degrees clockwise to view" (6).
    image = Image.new("RGB", (80, 40), "red")
    image.paste("blue", (40, 0, 80, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=_exif_with_gps(orientation=6))

    with Image.open(io.BytesIO(reencode(out.getvalue(), FileKind.JPEG))) as upright:
        assert upright.size == (40, 80)
        rgb = upright.convert("RGB")
        top, bottom = rgb.getpixel((20, 10)), rgb.getpixel((20, 70))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # red on top: the left side came up
    assert bottom[2] > 200 and bottom[0] < 60


def test_a_png_loses_its_text_chunks_exif_and_icc_profile() -> None:
    info = PngInfo()
    info.add_text("Author", "Borrower Name")
    info.add_text("Comment", "home address", zip=True)
    info.add_itxt("Description", "GPS 31.2304N 121.4737E", lang="en")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = _image_bytes("PNG", pnginfo=info, exif=_exif_with_gps(), icc_profile=srgb)
    with Image.open(io.BytesIO(original)) as before:
        assert isinstance(before, Image.Image) and getattr(before, "text", {})

    cleaned = reencode(original, FileKind.PNG)

    with Image.open(io.BytesIO(cleaned)) as after:
        after.load()
        assert after.format == "PNG"
        assert after.text == {}  # type: ignore[attr-defined]
        assert not after.getexif()
        assert not {"exif", "icc_profile", "xmp", "Author", "Comment"} & set(after.info)
    for trace in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"Borrower Name"):
        assert trace not in cleaned


@pytest.mark.parametrize(
    ("fmt", "kind", "mode", "mode_after"),
    [
        ("JPEG", FileKind.JPEG, "CMYK", "RGB"),
        ("JPEG", FileKind.JPEG, "L", "L"),
        ("PNG", FileKind.PNG, "P", "RGB"),
        ("PNG", FileKind.PNG, "LA", "RGBA"),
        ("PNG", FileKind.PNG, "RGBA", "RGBA"),
        ("PNG", FileKind.PNG, "I;16", "I;16"),
        ("PNG", FileKind.PNG, "1", "L"),
    ],
    ids=str,
)
def test_images_come_out_in_a_plain_mode(fmt: str, kind: FileKind, mode: str, mode_after: str) -> None:
    with Image.open(io.BytesIO(reencode(_image_bytes(fmt, mode=mode), kind))) as after:
        assert after.format == fmt
        assert after.mode == mode_after


def test_a_palette_png_with_transparency_keeps_it() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.paste(1, (0, 0, 4, 8))
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=1)
    with Image.open(io.BytesIO(reencode(out.getvalue(), FileKind.PNG))) as after:
        assert after.mode == "RGBA"
        assert after.getpixel((0, 0)) == (0, 0, 255, 0)
        assert after.getpixel((7, 0)) == (255, 0, 0, 255)


def test_prepared_evidence_describes_the_bytes_to_store() -> None:
    photo = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(photo, format="JPEG", exif=_exif_with_gps())

    prepared = prepare_evidence("IMG_0001.HEIC", photo.getvalue(), files_already=3)

    assert isinstance(prepared, PreparedEvidence)
    assert (prepared.kind, prepared.content_type, prepared.display_name) == (
        FileKind.JPEG,
        "image/jpeg",
        "IMG_0001.jpg",
    )
    assert prepared.data != photo.getvalue() and b"Exif" not in prepared.data
    assert prepared.size == len(prepared.data)
    assert re.fullmatch(r"[0-9a-f]{64}", prepared.sha256)

    pdf = prepare_evidence("payslip.pdf", PDF, files_already=0)
    assert (pdf.kind, pdf.content_type, pdf.data, pdf.display_name) == (
        FileKind.PDF,
        "application/pdf",
        PDF,
        "payslip.pdf",
    )


# ---- storage ----------------------------------------------------------------------------------------

KEY = re.compile(r"[0-9a-f]{32}\.(pdf|jpg|png|jpeg)")


def test_storage_keys_are_random_and_owe_nothing_to_the_upload(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "evidence")
    keys = [store.put(PDF, suffix=".pdf") for _ in range(20)]
    assert len(set(keys)) == 20
    assert all(KEY.fullmatch(key) for key in keys)
    key = keys[0]
    assert store.exists(key)
    assert store.open(key) == PDF
    assert (tmp_path / "evidence" / key[:2] / key).read_bytes() == PDF
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # already gone: nothing happens
    with pytest.raises(FileNotFoundError):
        store.open(key)


def test_stored_files_and_their_directories_are_private(tmp_path: Path) -> None:
    root = tmp_path / "evidence"
    key = LocalStorage(root).put(b"%PDF-1.7 x", suffix=".pdf")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / key[:2]).stat().st_mode) == 0o700
    assert stat.S_IMODE((root / key[:2] / key).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        "",
        "payslip.pdf",
        "0123456789abcdef0123456789abcdef/../x.pdf",
        "0123456789abcdef0123456789abcdef.pdf/..",
        "0123456789ABCDEF0123456789ABCDEF.pdf",
        "0123456789abcdef0123456789abcdef.pdf\x00.txt",
        "0123456789abcdef0123456789abcdef.pdf\n",
        "0123456789abcdef0123456789abcde.pdf",
        "..\\..\\windows\\win.ini",
    ],
    ids=repr,
)
def test_keys_the_store_did_not_make_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalStorage(tmp_path / "evidence")
    for operation in (store.open, store.exists, store.delete):
        with pytest.raises(StorageKeyError):
            operation(key)


def test_a_suffix_may_come_with_or_without_its_dot(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{32}\.jpeg", store.put(PDF, suffix="jpeg"))
    assert re.fullmatch(r"[0-9a-f]{32}\.jpg", store.put(PDF, suffix=".jpg"))


@pytest.mark.parametrize("suffix", ["", ".", "..pdf", ".PDF", "/../x", ".p/df", ".toolongsuffix", "pdf\n"])
def test_a_suffix_must_be_a_short_extension(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        LocalStorage(tmp_path).put(PDF, suffix=suffix)


def test_a_write_that_fails_leaves_neither_the_file_nor_a_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "evidence"

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        LocalStorage(root).put(PDF, suffix=".pdf")
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_a_file_appears_whole_under_its_key_only_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bytes, bool]] = []
    real_replace = os.replace

    def watching(source: str, target: str) -> None:
        seen.append((Path(source).name, Path(source).read_bytes(), Path(target).exists()))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", watching)
    key = LocalStorage(tmp_path).put(PDF, suffix=".pdf")
    [(temporary, content, target_existed)] = seen
    assert content == PDF and not target_existed
    assert not KEY.fullmatch(temporary)  # a half-written file can never be asked for by key
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [key]


def test_the_evidence_directory_comes_from_the_config(tmp_path: Path) -> None:
    assert evidence_directory({"INSTANCE_PATH": str(tmp_path)}) == tmp_path / "evidence"
    chosen = tmp_path / "elsewhere"
    assert evidence_directory({"INSTANCE_PATH": "/nowhere", "EVIDENCE_DIR": str(chosen)}) == chosen
    store = storage_from_config({"INSTANCE_PATH": str(tmp_path), "EVIDENCE_DIR": None})
    assert isinstance(store, LocalStorage) and store.root == tmp_path / "evidence"


def test_the_evidence_directory_is_never_under_static(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="static"):
        evidence_directory({"INSTANCE_PATH": str(tmp_path), "EVIDENCE_DIR": str(ROOT / "static" / "up")})


# ---- the bad-file corpus -----------------------------------------------------------------------------

BadFile = tuple[str, Callable[[], bytes], int, str]

CORPUS: list[BadFile] = [
    (
        "statement.pdf",
        lambda: b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>",
        0,
        "evidence_type_not_allowed",
    ),
    (
        "photo.png",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        0,
        "evidence_type_not_allowed",
    ),
    ("payslips.zip", lambda: _zip("payslip.pdf", PDF), 0, "evidence_type_not_allowed"),
    ("letter.docx", lambda: _zip("word/document.xml", b"<w:document/>"), 0, "evidence_type_not_allowed"),
    ("empty.pdf", lambda: b"", 0, "evidence_empty"),
    ("big.pdf", lambda: PDF.ljust(MAX_FILE_BYTES + 1, b" "), 0, "evidence_too_large"),
    ("../../etc/passwd.pdf", lambda: PDF, 0, "evidence_name_invalid"),
    ("C:\\x\\a.jpg", lambda: _image_bytes("JPEG"), 0, "evidence_name_invalid"),
    ("payslip.pdf\x00.jpg", lambda: PDF, 0, "evidence_name_invalid"),
    ("invoice\u202egpj.pdf", lambda: PDF, 0, "evidence_name_invalid"),
    ("animation.gif", lambda: _image_bytes("GIF"), 0, "evidence_type_not_allowed"),
    ("photo.jpg", lambda: _image_bytes("WEBP"), 0, "evidence_type_not_allowed"),
    (
        "IMG_0001.jpg",
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        0,
        "evidence_type_not_allowed",
    ),
    ("scan.tif", lambda: _image_bytes("TIFF"), 0, "evidence_type_not_allowed"),
    (
        "setup.pdf",
        lambda: b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 100 + b"This program",
        0,
        "evidence_type_not_allowed",
    ),
    ("payslip.pdf", "月薪：8000 元\nSalary: 8000\n".encode, 0, "evidence_type_not_allowed"),
    ("cut.jpg", lambda: _image_bytes("JPEG", size=(400, 300))[:600], 0, "evidence_unreadable"),
    ("garbage.jpg", lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, 0, "evidence_unreadable"),
    ("broken.png", _png_with_bad_crc, 0, "evidence_unreadable"),
    ("bomb.png", lambda: _png_declaring(100_000, 100_000), 0, "evidence_image_too_large"),
    ("big-photo.png", lambda: _png_declaring(8000, MAX_PIXELS // 8000 + 1), 0, "evidence_image_too_large"),
    (
        "form.pdf",
        lambda: PDF.replace(b"/Pages 2 0 R", b"/OpenAction << /S /JavaScript /JS (app.alert(1)) >>"),
        0,
        "evidence_pdf_active_content",
    ),
    (
        "invoice.pdf",
        lambda: PDF.replace(b"/Pages 2 0 R", b"/OpenAction << /S /Launch /F (calc.exe) >>"),
        0,
        "evidence_pdf_active_content",
    ),
    (
        "portfolio.pdf",
        lambda: PDF.replace(b"/Pages 2 0 R", b"/Names << /EmbeddedFiles 3 0 R >>"),
        0,
        "evidence_pdf_active_content",
    ),
    ("eleventh.pdf", lambda: PDF, MAX_FILES_PER_CASE, "evidence_too_many"),
]
CORPUS_IDS = [
    "html_renamed_pdf", "svg_renamed_png", "zip", "docx", "zero_bytes", "ten_mb_plus_one", "dot_dot_path",
    "windows_path", "nul_in_name", "bidi_override_name", "gif", "webp_renamed_jpg", "heic", "tiff", "exe",
    "plain_text", "truncated_jpeg", "jpeg_header_then_garbage", "png_bad_checksum", "png_bomb",
    "png_over_40_megapixels", "pdf_javascript", "pdf_launch", "pdf_embedded_file", "eleventh_file",
]  # fmt: skip


def _upload(
    store: LocalStorage, filename: str, data: bytes, files_already: int
) -> tuple[PreparedEvidence, str]:
    """What the service does with an upload: prepare it, then store the prepared bytes."""
    prepared = prepare_evidence(filename, data, files_already)
    return prepared, store.put(prepared.data, suffix=prepared.kind.extension)


def test_the_corpus_is_large_and_every_entry_is_distinct() -> None:
    assert len(CORPUS) == len(CORPUS_IDS) >= 12
    assert len({(name, make()) for name, make, _, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("filename", "make", "files_already", "code"), CORPUS, ids=CORPUS_IDS)
def test_a_bad_upload_is_refused_with_its_reason_and_nothing_is_stored(
    tmp_path: Path, filename: str, make: Callable[[], bytes], files_already: int, code: str
) -> None:
    store = LocalStorage(tmp_path / "evidence")
    data = make()

    with pytest.raises(DomainError) as caught:
        _upload(store, filename, data, files_already)

    assert caught.value.code == code
    message = str(caught.value)
    assert message and "{" not in message
    assert not (tmp_path / "evidence").exists()


@pytest.mark.parametrize(
    ("filename", "make", "kind"),
    [
        ("payslip.pdf", lambda: PDF, FileKind.PDF),
        ("photo.jpg", lambda: _image_bytes("JPEG"), FileKind.JPEG),
        ("photo.png", lambda: _image_bytes("JPEG"), FileKind.JPEG),  # misnamed, but a real JPEG
        ("screenshot.png", lambda: _image_bytes("PNG"), FileKind.PNG),
        ("tenth.pdf", lambda: PDF, FileKind.PDF),
    ],
    ids=["pdf", "jpeg", "jpeg_named_png", "png", "tenth_file"],
)
def test_good_uploads_are_stored(
    tmp_path: Path, filename: str, make: Callable[[], bytes], kind: FileKind
) -> None:
    store = LocalStorage(tmp_path / "evidence")
    files_already = MAX_FILES_PER_CASE - 1 if filename == "tenth.pdf" else 0
    prepared, key = _upload(store, filename, make(), files_already)
    assert prepared.kind is kind and key.endswith(kind.extension)
    assert store.open(key) == prepared.data
