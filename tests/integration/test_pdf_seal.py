"""Agreement PDFs: WeasyPrint renders Chinese in Noto Sans CJK SC; pyHanko seals them and checks the seal."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import stat
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.timestamps import DummyTimeStamper
from pypdf import PdfReader

import portal.integrations.seal as seal_module
from portal.config import ConfigError
from portal.integrations.pdf import pdf_sha256, render_pdf
from portal.integrations.seal import (
    BROKEN_SEAL,
    DEV_FILE,
    MODIFIED_AFTER_SEAL,
    NO_SEAL,
    NOT_PDF,
    UNREADABLE,
    UNTRUSTED,
    SealKey,
    development_key,
    seal_key_from_config,
    seal_pdf,
    verify_sealed,
)

SENTENCE = "还款计划：每月还款 ¥1,234.56"

# A template that sets no font anywhere, and a page-number footer: both must come out in Noto Sans CJK SC.
PAGE = """<!doctype html>
<html lang="zh-Hans"><head><meta charset="utf-8"><style>
@page {{ size: A4; margin: 20mm; @bottom-center {{ content: "第 " counter(page) " 页"; }} }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #999; padding: 4px; }}
</style></head><body>
<h1>还款协议</h1>
<p>{sentence}</p>
<table><thead><tr><th>期数</th><th>到期日</th><th>金额</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>"""


def agreement_html(rows: int = 3, paragraphs: int = 1) -> str:
    body = "".join(
        f"<tr><td>第 {n} 期</td><td>2025-{(n - 1) % 12 + 1:02d}-15</td><td>¥1,234.56</td></tr>"
        for n in range(1, rows + 1)
    )
    return PAGE.format(sentence="</p><p>".join([SENTENCE] * paragraphs), rows=body)


def font_names(data: bytes) -> set[str]:
    """BaseFont names of every font the pages use, the subset tag ("ABCDEF+") removed."""
    names = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        fonts = page["/Resources"].get_object().get("/Font", {})
        for font in fonts.get_object().values():
            names.add(str(font.get_object()["/BaseFont"]).lstrip("/").split("+", 1)[-1])
    return names


@pytest.fixture(scope="module")
def agreement() -> bytes:
    return render_pdf(agreement_html())


@pytest.fixture
def config(tmp_path: Path) -> dict[str, str]:
    return {"ACCORD_ENV": "test", "INSTANCE_PATH": str(tmp_path)}


@pytest.fixture
def key(config: dict[str, str]) -> SealKey:
    return seal_key_from_config(config)


@pytest.fixture
def sealed(agreement: bytes, key: SealKey) -> bytes:
    return seal_pdf(agreement, key, reason="还款协议 / repayment agreement")


def test_chinese_agreement_renders_in_noto_sans_cjk_sc_footer_included(agreement: bytes) -> None:
    assert agreement.startswith(b"%PDF-")
    names = font_names(agreement)
    normalised = {name.replace("-", "").replace(" ", "") for name in names}
    # Every font is Noto Sans CJK SC (regular, and bold for the heading): no fallback (DejaVu, the JP cut).
    assert normalised, "the PDF uses no fonts"
    assert all(name.startswith("NotoSansCJKSC") for name in normalised), names
    if pdffonts := shutil.which("pdffonts"):
        listing = subprocess.run(  # noqa: S603 - the tool found on PATH, reading the PDF from stdin
            [pdffonts, "-"], input=agreement, capture_output=True, check=True
        )
        assert "Noto-Sans-CJK-SC" in listing.stdout.decode()
        assert "DejaVu" not in listing.stdout.decode()


def test_fingerprint_is_the_sha256_of_the_exact_bytes(agreement: bytes) -> None:
    assert pdf_sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert pdf_sha256(agreement) != pdf_sha256(agreement + b"\n")


def test_sealed_agreement_is_sealed_intact_trusted_and_whole(
    agreement: bytes, sealed: bytes, key: SealKey
) -> None:
    assert sealed.startswith(agreement)  # an incremental update: the signed bytes are still there
    check = verify_sealed(sealed, key)
    assert check.sealed and check.intact and check.trusted and check.covers_whole_file
    assert check.problem is None and check.ok
    assert check.signer == "Accord development seal"
    assert check.signed_at is not None
    assert abs(check.signed_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    # The certificate list form of the trust argument answers the same.
    assert verify_sealed(sealed, [key.certificate]).ok


@pytest.mark.parametrize("where", [0.25, 0.5, 0.75])
def test_one_flipped_byte_breaks_the_seal_without_raising(sealed: bytes, key: SealKey, where: float) -> None:
    damaged = bytearray(sealed)
    damaged[int(len(damaged) * where)] ^= 0x01
    check = verify_sealed(bytes(damaged), key)
    assert not check.ok
    assert not (check.sealed and check.intact)
    assert check.problem in {BROKEN_SEAL, UNREADABLE, NO_SEAL}


def test_truncated_sealed_file_is_not_sealed(sealed: bytes, key: SealKey) -> None:
    for length in (len(sealed) // 2, len(sealed) - 100, 10):
        check = verify_sealed(sealed[:length], key)
        assert not check.ok and check.problem is not None


def test_update_appended_after_the_seal_is_reported(sealed: bytes, key: SealKey) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(sealed))
    page_ref, _ = writer.find_page_for_modification(0)
    note = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Annot"),
            pdf_name("/Subtype"): pdf_name("/Text"),
            pdf_name("/Rect"): generic.ArrayObject([generic.FloatObject(v) for v in (10, 10, 30, 30)]),
            pdf_name("/Contents"): generic.TextStringObject("每月还款 ¥1"),
        }
    )
    writer.register_annotation(page_ref, writer.add_object(note))
    out = io.BytesIO()
    writer.write(out)
    check = verify_sealed(out.getvalue(), key)
    assert check.sealed and check.intact and check.trusted
    assert not check.covers_whole_file
    assert check.problem == MODIFIED_AFTER_SEAL and not check.ok


def test_what_is_not_a_sealed_pdf_is_answered_not_raised(agreement: bytes, key: SealKey) -> None:
    html = agreement_html().encode()
    assert verify_sealed(html, key).problem == NOT_PDF
    assert verify_sealed(b"", key).problem == NOT_PDF
    assert verify_sealed(b"%PDF-1.7\n" + b"\x00garbage" * 50, key).problem == UNREADABLE
    unsealed = verify_sealed(agreement, key)
    assert unsealed.problem == NO_SEAL
    for check in (verify_sealed(html, key), verify_sealed(b"", key), unsealed):
        assert not check.sealed and not check.ok


def test_seal_by_another_key_is_not_trusted(agreement: bytes, key: SealKey, tmp_path: Path) -> None:
    stranger = development_key(tmp_path / "elsewhere")
    assert stranger.fingerprint != key.fingerprint
    check = verify_sealed(seal_pdf(agreement, stranger, reason="test"), key)
    assert check.sealed and check.intact and check.covers_whole_file
    assert not check.trusted and check.problem == UNTRUSTED


def test_development_seal_is_generated_once_and_reused(config: dict[str, str], tmp_path: Path) -> None:
    first = seal_key_from_config(config)
    second = seal_key_from_config(config)
    assert first.fingerprint == second.fingerprint
    path = tmp_path / "seal" / DEV_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [DEV_FILE]  # no temporary files left
    certificate = first.certificate
    assert certificate.subject.rfc4514_string() == "CN=Accord development seal"
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert dt.timedelta(days=3650) <= lifetime <= dt.timedelta(days=3654)


RACER = """
import sys, time
from pathlib import Path
from portal.integrations.seal import development_key
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(development_key(Path(sys.argv[1])).fingerprint)
"""


def test_processes_creating_the_development_seal_at_once_agree_on_one(tmp_path: Path) -> None:
    directory = str(tmp_path / "seal")
    start = time.time() + 3.0  # after the imports: all three reach the empty directory together
    racers = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", RACER, directory, str(start)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    prints = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert len(set(prints)) == 1 and len(prints[0]) == 64
    assert development_key(Path(directory)).fingerprint == prints[0]


def test_threads_racing_to_write_the_seal_file_leave_one_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every thread has found no file and made its own key before any of them writes.
    barrier = threading.Barrier(8)
    make = seal_module._new_development_pem

    def make_together() -> bytes:
        barrier.wait(timeout=30)
        return make()

    monkeypatch.setattr(seal_module, "_new_development_pem", make_together)
    seen: list[str] = []
    threads = [
        threading.Thread(target=lambda: seen.append(development_key(tmp_path / "seal").fingerprint))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert [p.name for p in (tmp_path / "seal").iterdir()] == [DEV_FILE]


def test_production_without_a_pkcs12_seal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SEAL_PKCS12_PATH"):
        seal_key_from_config({"ACCORD_ENV": "production", "INSTANCE_PATH": str(tmp_path)})
    assert not (tmp_path / "seal").exists()


def test_production_seal_comes_from_the_pkcs12_file(agreement: bytes, tmp_path: Path) -> None:
    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Accord Lending Ltd seal")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(private_key, hashes.SHA256())
    )
    path = tmp_path / "seal.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"seal", private_key, certificate, None, BestAvailableEncryption(b"s3cret")
        )
    )
    config = {"ACCORD_ENV": "production", "INSTANCE_PATH": str(tmp_path), "SEAL_PKCS12_PATH": str(path)}
    key = seal_key_from_config({**config, "SEAL_PKCS12_PASSWORD": "s3cret"})
    assert key.certificate == certificate
    check = verify_sealed(seal_pdf(agreement, key, reason="test"), key)
    assert check.ok and check.signer == "Accord Lending Ltd seal"
    with pytest.raises(ConfigError, match="wrong passphrase"):
        seal_key_from_config({**config, "SEAL_PKCS12_PASSWORD": "wrong"})
    with pytest.raises(ConfigError, match="cannot read"):
        seal_key_from_config({**config, "SEAL_PKCS12_PATH": str(tmp_path / "missing.p12")})


TSA_TIME = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=7)


@pytest.fixture
def time_stamp_authority() -> Iterator[str]:
    """A local RFC 3161 time-stamp server (pyHanko's DummyTimeStamper behind http.server)."""
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the dummy TSA is RSA-only
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Test TSA")])
    now = dt.datetime.now(dt.UTC)
    tsa_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(tsa_key, hashes.SHA256())
    )
    stamper = DummyTimeStamper(
        tsa_cert=seal_module._asn1_certificate(tsa_cert),
        tsa_key=seal_module._asn1_private_key(tsa_key),
        fixed_dt=TSA_TIME,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = tsp.TimeStampReq.load(self.rfile.read(int(self.headers["Content-Length"])))
            body = stamper.request_tsa_response(request).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_seal_with_a_time_stamp_authority_is_pades_b_t(
    agreement: bytes, key: SealKey, time_stamp_authority: str
) -> None:
    sealed = seal_pdf(agreement, key, reason="test", tsa_url=time_stamp_authority)
    check = verify_sealed(sealed, key)
    assert check.ok
    assert check.signed_at == TSA_TIME  # the authority's time, not the time the signer claims


def test_render_and_seal_of_a_two_page_agreement_takes(
    key: SealKey, capsys: pytest.CaptureFixture[str]
) -> None:
    html = agreement_html(rows=24, paragraphs=12)
    render_pdf(html)  # the first render loads fonts and caches: measured apart
    renders, seals, verifies = [], [], []
    for _ in range(5):
        started = time.perf_counter()
        pdf = render_pdf(html)
        rendered = time.perf_counter()
        sealed = seal_pdf(pdf, key, reason="timing")
        signed = time.perf_counter()
        assert verify_sealed(sealed, key).ok
        renders.append(rendered - started)
        seals.append(signed - rendered)
        verifies.append(time.perf_counter() - signed)
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    with capsys.disabled():
        print(
            f"\n{pages}-page agreement, median of 5: render {statistics.median(renders):.3f} s, "
            f"seal {statistics.median(seals):.3f} s, verify {statistics.median(verifies):.3f} s, "
            f"{len(pdf) // 1024} KiB -> {len(sealed) // 1024} KiB sealed"
        )
    assert pages == 2
