"""Start-up checks of the cloud TLS files, and the TLS context for AWS IoT Core.

A wrong path, an unreadable or expired certificate, or a key that does not belong to the
certificate is found here, before any connection, and reported as ONE clear error: a
reconnect loop could never fix it. Whether the broker trusts the certificate can only be
learnt at the handshake (service.py reports that once, then exits).
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


class CertificateProblem(Exception):
    pass


def _read(path: str, what: str, env: str) -> bytes:
    if not path:
        raise CertificateProblem(f"{what}: {env} is not set")
    p = Path(path)
    if not p.is_file():
        raise CertificateProblem(f"{what}: {env}={path} does not exist or is not a file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise CertificateProblem(f"{what}: cannot read {path}: {exc.strerror}") from None


def _load_certs(data: bytes, path: str, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateProblem(f"{what}: {path} holds no PEM certificate") from None


def _check_dates(cert: x509.Certificate, path: str, what: str, now: dt.datetime) -> None:
    if now > cert.not_valid_after_utc:
        raise CertificateProblem(f"{what} {path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
                                 f"(subject {cert.subject.rfc4514_string()})")
    if now < cert.not_valid_before_utc:
        raise CertificateProblem(f"{what} {path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def check_files(ca_file: str, cert_file: str, key_file: str) -> dt.datetime:
    """Raise CertificateProblem with a clear message; return the client certificate's expiry."""
    now = dt.datetime.now(dt.timezone.utc)
    for ca in _load_certs(_read(ca_file, "CA certificate", "CLOUD_CA_FILE"), ca_file, "CA certificate"):
        _check_dates(ca, ca_file, "CA certificate", now)
    cert = _load_certs(_read(cert_file, "client certificate", "CLOUD_CERT_FILE"), cert_file,
                       "client certificate")[0]
    _check_dates(cert, cert_file, "client certificate", now)
    key_data = _read(key_file, "private key", "CLOUD_KEY_FILE")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        # The message never includes the key's bytes: no secret in the log.
        raise CertificateProblem(f"private key: {key_file} is not an unencrypted PEM private key") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
        raise CertificateProblem(f"private key {key_file} does not belong to the client certificate {cert_file}")
    return cert.not_valid_after_utc


def tls_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2 exactly, as AWS IoT Core's MQTT endpoint on 8883 speaks it.

    Pinning 1.2 also makes a refused client certificate fail inside the handshake (in TLS 1.3
    the server's refusal only arrives after it), so it is reported as a certificate error.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server and its host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=ca_file)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


# OpenSSL reasons that mean "the broker does not accept who we are" or "we do not trust it".
REFUSAL_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
}


def describe_refusal(exc: BaseException) -> str | None:
    """A clear sentence when a TLS error is a certificate problem (not worth retrying), else None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the cloud broker's certificate is not trusted by CLOUD_CA_FILE "
                f"({exc.verify_message}); check CLOUD_CA_FILE and CLOUD_MQTT_HOST")
    if isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) in REFUSAL_REASONS:
        return (f"the cloud broker refused our client certificate ({exc.reason}); check that "
                f"CLOUD_CERT_FILE is registered and active for this device and signed by a CA it trusts")
    return None
