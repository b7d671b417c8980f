"""The load balancer's TLS certificate, on the controller.

With lb_tls and no lb_tls_certificate/lb_tls_key of the inventory's own, the kit makes a self-signed pair once per
inventory next to its secrets (secrets_dir/<inventory_name>-tls.crt, and -tls.key mode 0600, both git-ignored) and
reuses it on every later apply. Its subjectAltName names every address the balancer is reached at (the lb hosts'
ssh_hostname and private_ip); a pair that no longer names one of them (a new lb host), or expires within 30 days, is
made again. Clients that talk to the balancer trust that certificate file as their only CA (Deployment.tls_ca).

With lb_tls_certificate and lb_tls_key, those files are what the balancer serves, and clients trust the system's CAs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .variables import controller_path

VALID_DAYS = 3650
RENEW_DAYS = 30  # a pair this close to its end is made again


def certificate_file(directory: str | Path, inventory_name: str) -> Path:
    return Path(directory) / f"{inventory_name}-tls.crt"


def key_file(directory: str | Path, inventory_name: str) -> Path:
    return Path(directory) / f"{inventory_name}-tls.key"


def subject_names(addresses: Iterable[str | None]) -> list[str]:
    """The distinct addresses and host names, in order (None and empty ones left out)."""
    names: list[str] = []
    for address in addresses:
        if address and str(address) not in names:
            names.append(str(address))
    return names


def _general_name(name: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def covered(certificate_path: Path, names: list[str]) -> bool:
    """The certificate names every one of `names` in its subjectAltName and is good for RENEW_DAYS more."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
        alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    now = datetime.datetime.now(datetime.UTC)
    return all(
        _general_name(name) in alt for name in names
    ) and certificate.not_valid_after_utc - now > datetime.timedelta(days=RENEW_DAYS)


def self_signed(directory: str | Path, inventory_name: str, names: list[str]) -> tuple[Path, Path]:
    """The inventory's self-signed pair (certificate, key), made now unless the one already there names every one
    of `names` and is not about to expire."""
    certificate_path, key_path = certificate_file(directory, inventory_name), key_file(directory, inventory_name)
    if not names:
        raise ValueError("a certificate needs at least one address to name")
    if key_path.exists() and covered(certificate_path, names):
        key_path.chmod(0o600)
        return certificate_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"session-kit {inventory_name}"[:64]),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(key_path, key_pem, 0o600)
    _write(certificate_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return certificate_path, key_path


def _write(path: Path, content: bytes, mode: int) -> None:
    """Atomically, created with its mode (a key is never readable by others, not even for a moment)."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def pair(root: Path, data: dict[str, Any], names: list[str]) -> tuple[Path, Path]:
    """What the balancer serves (certificate chain, key) as files on the controller: the inventory's own, or its
    self-signed pair (made if needed) naming `names`."""
    if data.get("lb_tls_certificate"):
        return controller_path(data["lb_tls_certificate"]), controller_path(data["lb_tls_key"])
    return self_signed(root / data["secrets_dir"], data["inventory_name"], names)


def spki_sha256(certificate_path: str | Path) -> str:
    """base64 of the SHA-256 of the (first) certificate's public key (SubjectPublicKeyInfo): what Chromium's
    --ignore-certificate-errors-spki-list and curl's --pinnedpubkey sha256//... take."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certificate = x509.load_pem_x509_certificate(Path(certificate_path).read_bytes())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
