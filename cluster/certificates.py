"""A local certificate authority and the certificates it signs: what `tock up --tls` gives its
nodes, and what tests give the HTTPS apps they run.

The CA is a key and a self-signed certificate in a directory of its own (`ca.pem`, `ca.key`).
`issue` writes a server certificate for the given hosts (IP addresses and names, in its
subjectAltName), signed by the CA, as `{name}.pem` (the certificate, then the CA's: the chain a
server sends, and the CA a node trusts by default, node/tls.py) and `{name}.key`. Keys are
written 0600 into directories made 0700, and files that exist are used again, so that a local
cluster started again on the same data dir keeps its CA; a certificate close to its end is
issued again.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
CERTIFICATE_VALIDITY = datetime.timedelta(days=365)
# A certificate with less than this left is issued again rather than used.
RENEW_BEFORE = datetime.timedelta(days=7)
# Where a local cluster's nodes are reached.
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate chain (PEM) and its private key (PEM)."""

    cert_file: Path
    key_file: Path


class CertificateAuthority:
    """The CA in `directory`, created there on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_file = directory / "ca.pem"
        key_file = directory / "ca.key"
        if not (self.cert_file.exists() and key_file.exists()) or _expiring(self.cert_file):
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tock local CA")])
            certificate = (
                _builder(name, name, key.public_key(), CA_VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_key_usage(ca=True), critical=True)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                    critical=False,
                )
                .sign(key, hashes.SHA256())
            )
            _write_private(key_file, _key_pem(key))
            _write_private(self.cert_file, certificate.public_bytes(serialization.Encoding.PEM))
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not the EC key this CA writes")
        self._key = loaded
        self._certificate = x509.load_pem_x509_certificate(self.cert_file.read_bytes())

    def issue(
        self, directory: Path, name: str, hosts: tuple[str, ...] = LOCAL_HOSTS
    ) -> CertificateFiles:
        """A server certificate for `hosts` in `directory`, issued unless a valid one is
        there."""
        files = CertificateFiles(directory / f"{name}.pem", directory / f"{name}.key")
        if (
            files.cert_file.exists()
            and files.key_file.exists()
            and not _expiring(files.cert_file)
            # Signed by this CA, not by one it replaced.
            and files.cert_file.read_bytes().endswith(self.cert_file.read_bytes())
        ):
            return files
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        certificate = (
            _builder(subject, self._certificate.subject, key.public_key(), CERTIFICATE_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        chain = certificate.public_bytes(serialization.Encoding.PEM) + self.cert_file.read_bytes()
        _write_private(files.key_file, _key_pem(key))
        _write_private(files.cert_file, chain)
        return files


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    validity: datetime.timedelta,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # A little in the past: a peer whose clock is slightly behind still accepts it.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _expiring(cert_file: Path) -> bool:
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    left = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left < RENEW_BEFORE


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by its owner only, in a directory only its owner enters;
    atomically, so that a reader never sees half a key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    temporary.replace(path)
