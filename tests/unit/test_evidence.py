"""Evidence uploads: the kind of a file comes from its bytes, and its name is only ever displayed."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.evidence import (
    MAX_FILE_BYTES,
    MAX_FILES_PER_CASE,
    MAX_NAME_LENGTH,
    FileKind,
    check_pdf_body,
    check_upload,
    describe,
    display_name,
    name_problem,
    sniff,
)

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
MAGICS = (b"%PDF-", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def _refusal(filename: str, data: bytes, files_already: int = 0) -> str:
    with pytest.raises(DomainError) as caught:
        check_upload(filename, len(data), data[:1024], files_already)
    return caught.value.code


@pytest.mark.parametrize(
    ("head", "kind"), [(PDF, FileKind.PDF), (JPEG, FileKind.JPEG), (PNG, FileKind.PNG)], ids=str
)
def test_the_kind_of_a_file_comes_from_its_magic_bytes(head: bytes, kind: FileKind) -> None:
    assert sniff(head) is kind
    assert check_upload("anything.txt", len(head), head, 0) is kind


def test_the_extension_does_not_make_a_kind() -> None:
    assert _refusal("statement.pdf", b"<!DOCTYPE html><html><body>pay here</body></html>") == (
        "evidence_type_not_allowed"
    )
    assert check_upload("photo.png", len(JPEG), JPEG, 0) is FileKind.JPEG


def test_a_pdf_must_start_with_its_header_not_after_junk() -> None:
    assert sniff(b"\xef\xbb\xbf%PDF-1.4") is None
    assert sniff(b"  %PDF-1.4") is None
    assert sniff(b"%PDF") is None


@given(st.binary(max_size=64).filter(lambda head: not head.startswith(MAGICS)))
def test_bytes_without_an_allowed_magic_number_are_refused(head: bytes) -> None:
    assert sniff(head) is None
    with pytest.raises(DomainError) as caught:
        check_upload("file.pdf", max(len(head), 1), head, 0)
    assert caught.value.code == "evidence_type_not_allowed"


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"GIF89a\x01\x00", "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "heic"),
        (b"PK\x03\x04\x14\x00", "zip"),
        (b"MZ\x90\x00\x03\x00", "exe"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">', "svg"),
        (b"\n<!doctype html><html>", "html"),
        ("工资 3000 元\n".encode(), "text"),
        (b"\x00\x01\x02\x03", "unknown"),
    ],
)
def test_a_refused_file_is_described_for_the_logs(head: bytes, what: str) -> None:
    assert sniff(head) is None
    with pytest.raises(DomainError) as caught:
        check_upload("x.pdf", len(head), head, 0)
    assert caught.value.params["detected"] == what == describe(head)


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd.pdf",
        "C:\\x\\a.jpg",
        "C:a.jpg",
        "/etc/passwd",
        "folder/payslip.pdf",
        "..",
        "...",
        "a..pdf",
        "",
        "   ",
        "payslip\x00.pdf",
        "payslip\n.pdf",
        "invoice\u202egpj.pdf",
        "x" * (MAX_NAME_LENGTH + 1),
    ],
    ids=repr,
)
def test_file_names_that_are_paths_or_hide_something_are_refused(name: str) -> None:
    assert name_problem(name) is not None
    assert _refusal(name, PDF) == "evidence_name_invalid"


@given(st.text(max_size=50), st.sampled_from("/\\"), st.text(max_size=50))
def test_any_name_with_a_path_separator_is_refused(before: str, separator: str, after: str) -> None:
    assert _refusal(before + separator + after, PDF) == "evidence_name_invalid"


@pytest.mark.parametrize(
    "name", ["IMG_0001.JPG", "工资单 2026年11月.pdf", "Screenshot 2026-11-30 at 12.34.56.png", "scan"]
)
def test_ordinary_phone_and_scanner_names_are_accepted(name: str) -> None:
    assert name_problem(name) is None
    assert check_upload(name, len(PDF), PDF, 0) is FileKind.PDF


def test_empty_too_large_and_too_many_are_refused_in_that_order() -> None:
    assert _refusal("a.pdf", b"") == "evidence_empty"
    with pytest.raises(DomainError) as caught:
        check_upload("a.pdf", MAX_FILE_BYTES + 1, PDF, 0)
    assert caught.value.code == "evidence_too_large"
    assert str(caught.value) == "The file is larger than 10 MB."
    assert check_upload("a.pdf", MAX_FILE_BYTES, PDF, 0) is FileKind.PDF
    assert check_upload("a.pdf", len(PDF), PDF, MAX_FILES_PER_CASE - 1) is FileKind.PDF
    assert _refusal("a.pdf", PDF, files_already=MAX_FILES_PER_CASE) == "evidence_too_many"
    # The count is checked before anything about the file itself.
    assert _refusal("../a.exe", b"", files_already=MAX_FILES_PER_CASE) == "evidence_too_many"


def test_every_refusal_has_an_english_message_with_its_params_filled() -> None:
    cases = [("a.pdf", b"", 0), ("a/b.pdf", PDF, 0), ("a.pdf", b"GIF89a", 0), ("a.pdf", PDF, 10)]
    for name, data, already in cases:
        with pytest.raises(DomainError) as caught:
            check_upload(name, len(data), data, already)
        assert caught.value.code.startswith("evidence_")
        assert "{" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "kind", "shown"),
    [
        ("payslip.pdf", FileKind.PDF, "payslip.pdf"),
        ("IMG_0001.HEIC", FileKind.JPEG, "IMG_0001.jpg"),
        ("photo.png", FileKind.JPEG, "photo.jpg"),
        ("photo.jpeg", FileKind.JPEG, "photo.jpg"),
        ("letter", FileKind.PDF, "letter.pdf"),
        ("report.pdf.exe", FileKind.PDF, "report.pdf.exe.pdf"),
        ("Screenshot 2026-11-30 at 12.34.56", FileKind.PNG, "Screenshot 2026-11-30 at 12.34.56.png"),
        ('a<b>:"c"|?*.pdf', FileKind.PDF, "a_b___c____.pdf"),
        (".pdf", FileKind.PDF, "evidence.pdf"),
        ("  spaced   out .PDF ", FileKind.PDF, "spaced out.pdf"),
        ("../../etc/passwd", FileKind.PDF, "passwd.pdf"),
    ],
)
def test_the_display_name_carries_the_extension_of_the_real_kind(
    name: str, kind: FileKind, shown: str
) -> None:
    assert display_name(name, kind) == shown


@given(st.text(max_size=300), st.sampled_from(list(FileKind)))
def test_a_display_name_is_always_a_safe_name_ending_in_its_kind(name: str, kind: FileKind) -> None:
    shown = display_name(name, kind)
    assert shown.endswith(kind.extension)
    assert len(shown) <= MAX_NAME_LENGTH
    assert name_problem(shown) is None


def test_a_plain_pdf_passes_the_body_check() -> None:
    check_pdf_body(PDF)


def _pdf_with(body: bytes) -> bytes:
    return b"%PDF-1.7\n1 0 obj\n" + body + b"\nendobj\n%%EOF\n"


@pytest.mark.parametrize(
    "body",
    [
        b"<< /Type /Action /S /JavaScript /JS (app.alert(1)) >>",
        b"<< /OpenAction << /S /Launch /F (cmd.exe) >> >>",
        b"<< /Names << /EmbeddedFiles 3 0 R >> >>",
        b"<< /Type /EmbeddedFile /Length 4 >>",
        b"<< /S /J#61vaScript /J#53 (x) >>",
        b"<< /Type /ObjStm /Filter /FlateDecode >>\nstream\n"
        + zlib.compress(b"<< /S /JavaScript /JS (this.exportDataObject()) >>")
        + b"\nendstream",
    ],
    ids=["javascript", "launch", "embedded_files", "embedded_file", "hex_escaped", "in_object_stream"],
)
def test_a_pdf_with_active_content_is_refused(body: bytes) -> None:
    with pytest.raises(DomainError) as caught:
        check_pdf_body(_pdf_with(body))
    assert caught.value.code == "evidence_pdf_active_content"


def test_a_stream_after_another_is_still_inflated_and_read() -> None:
    harmless = b"<< /Filter /FlateDecode >>\nstream\n" + zlib.compress(b"BT (hi) Tj ET") + b"\nendstream"
    hidden = b"<< /Filter /FlateDecode >>\nstream\n" + zlib.compress(b"<< /S /Launch >>") + b"\nendstream"
    check_pdf_body(_pdf_with(harmless + b"\n" + harmless))
    with pytest.raises(DomainError):
        check_pdf_body(_pdf_with(harmless + b"\nendobj\n2 0 obj\n" + hidden))


def test_names_that_only_start_like_active_ones_are_fine() -> None:
    check_pdf_body(_pdf_with(b"<< /JSON 1 /Launcher 2 /JavaScripts_not 3 >> (JavaScript in a string)"))


def test_the_pdf_body_check_refuses_what_is_not_a_pdf() -> None:
    with pytest.raises(DomainError) as caught:
        check_pdf_body(b"<html>%PDF-1.7</html>")
    assert caught.value.code == "evidence_type_not_allowed"


def test_file_kinds_know_their_content_type_and_extension() -> None:
    assert [(k.value, k.content_type, k.extension) for k in FileKind] == [
        ("pdf", "application/pdf", ".pdf"),
        ("jpeg", "image/jpeg", ".jpg"),
        ("png", "image/png", ".png"),
    ]
