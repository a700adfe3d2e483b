"""The organisation's electronic seal on agreements: PAdES signatures with pyHanko.

- ``SealKey``: the private key, its certificate and any CA certificates that came with it.
  ``seal_key_from_config`` loads it from a PKCS#12 file (``SEAL_PKCS12_PATH``, passphrase
  ``SEAL_PKCS12_PASSWORD``); production refuses to run without one. Development and test, with no
  PKCS#12 configured, use a key and self-signed certificate ("Accord development seal", RSA 2048,
  ten years) generated once into ``<INSTANCE_PATH>/seal/dev-seal.pem`` (key and certificate in one
  file, so they always match; directory 0700, file 0600). The file is written to a temporary file
  and hard-linked into place, which fails if another process got there first: the first writer
  wins and everybody re-reads its file, so two processes starting at once end up with one key.
- ``seal_pdf``: a PAdES B-B signature (B-T with a time-stamp authority) over the whole document,
  appended as an incremental update in an invisible field named ``AccordSeal``.
- ``verify_sealed``: checks that seal against trusted certificates and that nothing was appended
  after it. It never raises on what it is given (an HTML file, a truncated PDF, nothing): it answers
  ``sealed=False`` with a ``problem`` code instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation import SignatureCoverageLevel, validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from portal.config import ConfigError

log = logging.getLogger("accord.seal")

FIELD_NAME = "AccordSeal"
DEV_SUBJECT = "Accord development seal"
DEV_VALIDITY = dt.timedelta(days=3652)  # ten years
DEV_FILE = "dev-seal.pem"
TSA_TIMEOUT_SECONDS = 10

# SealCheck.problem codes, most serious first.
NOT_PDF = "not_pdf"  # empty, or no "%PDF-" header: not a PDF at all
UNREADABLE = "unreadable"  # claims to be a PDF but cannot be parsed (truncated, corrupted)
NO_SEAL = "no_seal"  # a readable PDF without an AccordSeal signature
BROKEN_SEAL = "broken_seal"  # the seal does not match the bytes it covers, or cannot be checked
UNTRUSTED = "untrusted"  # intact, but not made with a key we trust
MODIFIED_AFTER_SEAL = "modified_after_seal"  # intact and trusted, but something was appended after it


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    """pyHanko speaks asn1crypto; Accord holds ``cryptography`` objects."""
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _asn1_private_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> asn1_keys.PrivateKeyInfo:
    return asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


class SealError(RuntimeError):
    """A document could not be sealed (not a PDF we can append to, or the time-stamp failed)."""


@dataclass(frozen=True)
class SealKey:
    """The organisation's signing key, its certificate, and the CA certificates that issued it."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate, lower-case hex."""
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    def signer(self) -> signers.SimpleSigner:
        return signers.SimpleSigner(
            signing_cert=_asn1_certificate(self.certificate),
            signing_key=_asn1_private_key(self.private_key),
            cert_registry=SimpleCertificateStore.from_certs([_asn1_certificate(cert) for cert in self.chain]),
        )


@dataclass(frozen=True)
class SealCheck:
    sealed: bool  # the file is a PDF with an AccordSeal signature in it
    intact: bool  # the signature is mathematically valid over the bytes it covers
    trusted: bool  # ... and made with a certificate we trust
    signed_at: dt.datetime | None  # the time-stamp's time when there is one, else the signer's claim
    signer: str | None  # the signing certificate's common name (or whole subject)
    covers_whole_file: bool  # nothing was appended after the seal
    problem: str | None  # one of the codes above; None when all is well

    @property
    def ok(self) -> bool:
        return self.sealed and self.intact and self.trusted and self.covers_whole_file


# -- the key ---------------------------------------------------------------------------------------


def seal_key_from_config(config: Mapping[str, Any]) -> SealKey:
    """The PKCS#12 seal when one is configured; else, outside production, the development seal."""
    path = config.get("SEAL_PKCS12_PATH")
    if path:
        return load_pkcs12(Path(path), config.get("SEAL_PKCS12_PASSWORD"))
    if config.get("ACCORD_ENV") == "production":
        raise ConfigError(
            "ACCORD_SEAL_PKCS12_PATH must name the organisation's seal (a PKCS#12 file) in production"
        )
    return development_key(Path(config["INSTANCE_PATH"]) / "seal")


def load_pkcs12(path: Path, password: str | bytes | None) -> SealKey:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the seal's PKCS#12 file {path}: {exc.strerror}") from exc
    secret = password.encode() if isinstance(password, str) else password
    try:
        key, certificate, chain = pkcs12.load_key_and_certificates(blob, secret or None)
    except ValueError as exc:  # wrong passphrase, or not PKCS#12
        raise ConfigError(f"cannot open the seal's PKCS#12 file {path} (wrong passphrase?)") from exc
    if certificate is None or not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"the PKCS#12 file {path} must hold an RSA or EC private key and its certificate")
    if certificate.public_key() != key.public_key():
        raise ConfigError(f"in the PKCS#12 file {path}, the certificate is not the private key's")
    return SealKey(key, certificate, tuple(chain))


def development_key(directory: Path) -> SealKey:
    """The development seal under ``directory``, generated on first use and kept afterwards."""
    path = directory / DEV_FILE
    if not path.exists():
        _write_once(path, _new_development_pem())
    blob = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(blob, password=None)
        certificate = x509.load_pem_x509_certificate(blob)
    except ValueError as exc:
        raise ConfigError(f"the development seal {path} is damaged; delete it to make a new one") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"the development seal {path} must hold an RSA or EC key")
    return SealKey(key, certificate)


def _new_development_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, DEV_SUBJECT)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # tolerate a little clock skew
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # "non-repudiation": what pyHanko requires of a signer
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + certificate.public_bytes(serialization.Encoding.PEM)


def _write_once(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` (0600) unless a file is already there; never a partial file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".seal-", suffix=".part")  # 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, path)  # atomic, and refuses to replace: the first writer wins
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: the last writer wins, still whole
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


# -- sealing ---------------------------------------------------------------------------------------


def seal_pdf(
    data: bytes, key: SealKey, *, reason: str, location: str = "Accord", tsa_url: str | None = None
) -> bytes:
    """``data`` with a PAdES seal over all of it (B-B; B-T when ``tsa_url`` names a time-stamp authority)."""
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
    )
    timestamper = HTTPTimeStamper(tsa_url, timeout=TSA_TIMEOUT_SECONDS) if tsa_url else None
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(data))
    except Exception as exc:  # pyHanko's reader raises several types on a broken file
        raise SealError(f"not a PDF that can be sealed: {exc}") from exc
    pdf_signer = signers.PdfSigner(meta, key.signer(), timestamper=timestamper)
    try:
        output = pdf_signer.sign_pdf(writer)
    except Exception as exc:  # a signing or time-stamping failure, whatever pyHanko calls it
        raise SealError(f"the document could not be sealed: {exc}") from exc
    return output.getvalue()


# -- verifying -------------------------------------------------------------------------------------


def _asn1_certificates(key_or_trust: SealKey | Sequence[Any]) -> list[asn1_x509.Certificate]:
    if isinstance(key_or_trust, SealKey):
        return [_asn1_certificate(key_or_trust.certificate)]
    return [
        cert if isinstance(cert, asn1_x509.Certificate) else _asn1_certificate(cert) for cert in key_or_trust
    ]


def _refused(problem: str) -> SealCheck:
    return SealCheck(
        sealed=False,
        intact=False,
        trusted=False,
        signed_at=None,
        signer=None,
        covers_whole_file=False,
        problem=problem,
    )


def verify_sealed(data: bytes, key_or_trust: SealKey | Sequence[Any]) -> SealCheck:
    """Is ``data`` a PDF sealed by one of the trusted certificates, with nothing added after the seal?

    ``key_or_trust`` is our ``SealKey`` (its certificate is trusted) or a list of certificates to
    trust (``cryptography`` or ``asn1crypto`` objects). Nothing is fetched from the network.
    """
    if not isinstance(data, bytes | bytearray) or b"%PDF-" not in bytes(data[:1024]):
        return _refused(NOT_PDF)
    try:
        reader = PdfFileReader(io.BytesIO(bytes(data)))
        seals = [sig for sig in reader.embedded_regular_signatures if sig.field_name == FIELD_NAME]
    except Exception:  # a damaged file makes the parser raise almost anything
        log.info("an unreadable PDF was offered for verification", exc_info=True)
        return _refused(UNREADABLE)
    if not seals:
        return _refused(NO_SEAL)
    seal = seals[-1]
    try:
        context = ValidationContext(trust_roots=_asn1_certificates(key_or_trust), allow_fetching=False)
        status = validate_pdf_signature(seal, context, skip_diff=True)
    except Exception:  # a damaged signature dictionary or CMS blob
        log.info("a PDF seal could not be checked", exc_info=True)
        return SealCheck(
            sealed=True,
            intact=False,
            trusted=False,
            signed_at=None,
            signer=None,
            covers_whole_file=False,
            problem=BROKEN_SEAL,
        )
    intact = bool(status.intact and status.valid)
    trusted = intact and bool(status.trusted)
    whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    stamp = status.timestamp_validity
    signed_at = (
        stamp.timestamp if stamp is not None and stamp.intact and stamp.valid else status.signer_reported_dt
    )
    subject = status.signing_cert.subject
    signer = subject.native.get("common_name") or subject.human_friendly
    if not intact:
        problem: str | None = BROKEN_SEAL
    elif not trusted:
        problem = UNTRUSTED
    elif not whole:
        problem = MODIFIED_AFTER_SEAL
    else:
        problem = None
    return SealCheck(
        sealed=True,
        intact=intact,
        trusted=trusted,
        signed_at=signed_at,
        signer=signer,
        covers_whole_file=whole,
        problem=problem,
    )
