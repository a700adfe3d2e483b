"""Hardship evidence: which uploaded files are accepted, judged by their bytes and never their names.

A borrower may send PDF, JPEG and PNG files, up to ``MAX_FILE_BYTES`` each and ``MAX_FILES_PER_CASE``
on one hardship case. The kind of a file is decided by its first bytes (``sniff``); the name the
browser sent is only checked for shape (no folders, no control characters) and kept for display,
with the extension of the real kind (``display_name``). A PDF must carry no active content
(``check_pdf_body``). Images are re-encoded by the portal (``portal.integrations.images``).

Every refusal is a ``DomainError`` with a stable ``evidence_*`` code; nothing here touches storage.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from enum import StrEnum

from workflows.errors import DomainError

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_FILES_PER_CASE = 10
MAX_NAME_LENGTH = 200
# How much of the start of a file `check_upload` needs: the magic numbers are all in the first 16 bytes,
# the rest lets `describe` name what a refused file looks like (for logs).
HEAD_BYTES = 1024


class FileKind(StrEnum):
    PDF = "pdf"
    JPEG = "jpeg"
    PNG = "png"

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]

    @property
    def extension(self) -> str:
        """The extension a stored or downloaded file of this kind carries, dot included."""
        return _EXTENSIONS[self]


_CONTENT_TYPES = {FileKind.PDF: "application/pdf", FileKind.JPEG: "image/jpeg", FileKind.PNG: "image/png"}
_EXTENSIONS = {FileKind.PDF: ".pdf", FileKind.JPEG: ".jpg", FileKind.PNG: ".png"}

# Strict: the magic number must be at offset 0. (Readers tolerate up to 1 KB of junk before %PDF-;
# we do not, so a file is one thing from its first byte.)
_MAGIC = (
    (b"%PDF-", FileKind.PDF),
    (b"\xff\xd8\xff", FileKind.JPEG),
    (b"\x89PNG\r\n\x1a\n", FileKind.PNG),
)
ALLOWED = "PDF, JPEG, PNG"


def sniff(head: bytes) -> FileKind | None:
    """The kind of file whose first bytes are ``head``, by magic number alone; None if not allowed."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def describe(head: bytes) -> str:
    """A word for what a refused file seems to be, for logs and the error's params (never trusted)."""
    signatures = (
        (b"GIF8", "gif"),
        (b"PK\x03\x04", "zip"),
        (b"MZ", "exe"),
        (b"\x7fELF", "elf"),
        (b"BM", "bmp"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"%!PS", "postscript"),
        (b"{\\rtf", "rtf"),
        (b"\xd0\xcf\x11\xe0", "ms_office"),
        (b"Rar!", "rar"),
        (b"7z\xbc\xaf", "7z"),
        (b"\x1f\x8b", "gzip"),
    )
    found = next((name for magic, name in signatures if head.startswith(magic)), None)
    if found is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        found = "webp"
    if found is None and head[4:8] == b"ftyp":
        found = "heic" if head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heif") else "iso_media"
    return found or _describe_text(head)


def _describe_text(head: bytes) -> str:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in start:
        return "svg"
    if b"<html" in start or start.startswith((b"<!doctype html", b"<script", b"<head", b"<body")):
        return "html"
    if start.startswith(b"<"):
        return "xml"
    text = head.decode("utf-8", errors="replace")
    return "text" if all(ch.isprintable() or ch in "\t\r\n" for ch in text) else "unknown"


# Path separators, and characters that make a name lie about itself when shown (bidirectional overrides).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DRIVE = re.compile(r"^[A-Za-z]:")


def name_problem(filename: str) -> str | None:
    """Why a file name is refused ("separator", "control", ...), or None when it is fine."""
    stripped = filename.strip()
    if not stripped or stripped.strip(".") == "":
        return "empty"
    if len(filename) > MAX_NAME_LENGTH:
        return "too_long"
    if "/" in filename or "\\" in filename or _DRIVE.match(filename):
        return "separator"
    if ".." in filename:
        return "dot_dot"
    for ch in filename:
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return "control"
    return None


def check_upload(filename: str, size: int, head: bytes, files_already: int) -> FileKind:
    """The kind of an uploaded file, or a DomainError saying why it is refused.

    ``size`` is the whole file's length, ``head`` at least its first bytes (``HEAD_BYTES`` is plenty),
    ``files_already`` how many files the hardship case holds now.
    """
    if files_already >= MAX_FILES_PER_CASE:
        raise DomainError(
            "evidence_too_many", "A hardship case can hold at most {limit} files.", limit=MAX_FILES_PER_CASE
        )
    problem = name_problem(filename)
    if problem is not None:
        raise DomainError(
            "evidence_name_invalid",
            "The file name cannot be used. Rename the file (no folders or special characters, "
            "at most {limit} characters) and try again.",
            limit=MAX_NAME_LENGTH,
            problem=problem,
        )
    if size <= 0:
        raise DomainError("evidence_empty", "The file is empty.")
    if size > MAX_FILE_BYTES:
        raise DomainError(
            "evidence_too_large",
            "The file is larger than {limit_mb} MB.",
            limit_mb=MAX_FILE_BYTES // (1024 * 1024),
            size=size,
        )
    kind = sniff(head)
    if kind is None:
        raise DomainError(
            "evidence_type_not_allowed",
            "This type of file cannot be uploaded. Send a PDF, JPEG or PNG file.",
            allowed=ALLOWED,
            detected=describe(head),
        )
    return kind


# Names in a PDF that make it do something when opened: run scripts, start programs, carry files.
_ACTIVE_NAMES = frozenset(
    {b"javascript", b"js", b"launch", b"embeddedfile", b"embeddedfiles", b"richmedia", b"xfa"}
)
_NAME = re.compile(rb"/([^\s/<>\[\]()%{}]+)")
_HEX_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_STREAM = re.compile(rb"(?<!end)stream\r?\n(.*?)endstream", re.DOTALL)
# Compressed streams (object streams can hide dictionaries) are inflated up to this much in all.
_MAX_INFLATED = 64 * 1024 * 1024


def _active_names(data: bytes) -> set[str]:
    found: set[str] = set()
    for match in _NAME.finditer(data):
        name = _HEX_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), match.group(1)).lower()
        if name in _ACTIVE_NAMES:
            found.add(name.decode("ascii"))
    return found


def _inflated_streams(data: bytes) -> list[bytes]:
    """The streams of a PDF that inflate (FlateDecode), within a total budget against zip bombs."""
    out: list[bytes] = []
    budget = _MAX_INFLATED
    for match in _STREAM.finditer(data):
        inflater = zlib.decompressobj()
        try:
            chunk = inflater.decompress(match.group(1), budget)
        except zlib.error:
            continue
        out.append(chunk)
        budget -= len(chunk)
        if budget <= 0:
            break
    return out


def check_pdf_body(data: bytes) -> None:
    """Refuse a PDF that is not one, or that carries active content (scripts, launch actions,
    embedded files), in its dictionaries or inside compressed object streams; names written with
    ``#xx`` escapes count too."""
    if sniff(data[:HEAD_BYTES]) is not FileKind.PDF:
        raise DomainError(
            "evidence_type_not_allowed",
            "This type of file cannot be uploaded. Send a PDF, JPEG or PNG file.",
            allowed=ALLOWED,
            detected=describe(data[:HEAD_BYTES]),
        )
    found = _active_names(data)
    for stream in _inflated_streams(data):
        found |= _active_names(stream)
    if found:
        raise DomainError(
            "evidence_pdf_active_content",
            "The PDF contains scripts, actions or embedded files, which are not accepted. "
            "Print it to a new PDF, or send a photo of it, and try again.",
            found=", ".join(sorted(found)),
        )


# Characters a Windows or macOS file system refuses, or that read badly in a download name.
_UNSAFE_IN_DISPLAY = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_KNOWN_EXTENSIONS = frozenset(
    {"pdf", "jpg", "jpeg", "jpe", "jfif", "png", "heic", "heif", "gif", "webp", "bmp", "tif", "tiff"}
)
DEFAULT_STEM = "evidence"


def display_name(filename: str, kind: FileKind) -> str:
    """A name safe to show and to offer as a download name: the borrower's name (NFC, no separators
    or control characters), without an image or PDF extension, plus the extension of the real kind,
    at most ``MAX_NAME_LENGTH`` characters. ``IMG_0001.HEIC`` that is really a JPEG becomes
    ``IMG_0001.jpg``."""
    name = unicodedata.normalize("NFC", filename)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        "_" if ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch
        for ch in name
    )
    name = _UNSAFE_IN_DISPLAY.sub("_", name)
    name = " ".join(name.split())
    stem, dot, ext = name.rpartition(".")
    if dot and ext.lower() in _KNOWN_EXTENSIONS:
        name = stem
    name = name.replace("..", "_").strip(" .")
    extension = kind.extension
    name = name[: MAX_NAME_LENGTH - len(extension)].rstrip(" .") or DEFAULT_STEM
    return name + extension
