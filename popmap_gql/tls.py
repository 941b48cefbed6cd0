"""The certificate `serve --https` uses: made in the data folder on first use.

Amplify builds `https://<domain>/oauth2/...` URLs itself, so the local hosted UI must be
served over TLS. A browser trusts the server once it trusts `tls/ca.pem`, a certificate
authority made for this data folder alone: it may only vouch for the names it was made
for (X.509 name constraints: localhost, loopback addresses and the host `serve` binds),
and its private key is never written anywhere (it signs the server's certificate and is
dropped), so trusting it cannot let anyone vouch for another site. When the certificate
nears its end, lacks a host asked for or is not the key's, a new authority and
certificate replace them (and the new `ca.pem` must be trusted again).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from popmap_gql.files import write_whole

__all__ = ["LocalCertificate", "local_certificate"]

# Apple's platforms refuse server certificates valid for longer than 825 days.
VALID_DAYS = 825
RENEW_WITHIN_DAYS = 30
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_BINDS = {"0.0.0.0", "::", ""}  # noqa: S104  # names of binds, not a bind


@dataclass(frozen=True, slots=True)
class LocalCertificate:
    certificate: Path  # the server's certificate, then the authority's
    key: Path
    authority: Path  # what a browser (or `httpx`, `curl --cacert`) is told to trust
    created: bool


def _names(host: str) -> list[str]:
    names = list(LOOPBACK_NAMES)
    if host not in _WILDCARD_BINDS and host not in names:
        names.append(host)
    return names


def _general_name(name: str, *, subtree: bool = False) -> x509.GeneralName:
    """An address or a host name; as a `subtree`, a name constraint admitting exactly
    `name` (an address as a /32 or /128)."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return x509.DNSName(name)
    return x509.IPAddress(ipaddress.ip_network(address) if subtree else address)


def _covers(paths: LocalCertificate, names: Sequence[str]) -> bool:
    """The certificate is readable, far from its end, names every host, and is the one of
    the key beside it (a run stopped between writing the two leaves a new key by an old
    certificate, and TLS would not start)."""
    try:
        certificate = x509.load_pem_x509_certificate(paths.certificate.read_bytes())
        alternatives = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    if key.public_key() != certificate.public_key():
        return False
    renew_after = certificate.not_valid_after_utc - datetime.timedelta(days=RENEW_WITHIN_DAYS)
    if datetime.datetime.now(datetime.UTC) >= renew_after:
        return False
    return all(_general_name(name) in alternatives for name in names)


def local_certificate(data_dir: Path, host: str) -> LocalCertificate:
    """The certificate and key for serving on `host`, made if missing, expiring or not
    covering it."""
    folder = data_dir / "tls"
    paths = LocalCertificate(
        folder / "cert.pem", folder / "key.pem", folder / "ca.pem", created=False
    )
    names = _names(host)
    if _covers(paths, names):
        return paths
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=VALID_DAYS)

    authority_key = ec.generate_private_key(ec.SECP256R1())
    authority_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Popmap local development"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Popmap local CA {secrets.token_hex(4)}"),
        ]
    )

    def builder(subject: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        """A certificate of `key` for `subject`, by the authority, valid from now to `until`."""
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(authority_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(until)
        )

    authority = (
        builder(authority_name, authority_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[_general_name(name, subtree=True) for name in names],
                excluded_subtrees=None,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(authority_key.public_key()),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), server_key)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    # Each file replaced at once, created with its mode (never readable by others in between).
    write_whole(
        paths.key,
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        replace=True,
        mode=0o600,
    )
    write_whole(paths.authority, authority.public_bytes(pem), replace=True, mode=0o644)
    certificates = server.public_bytes(pem) + authority.public_bytes(pem)
    write_whole(paths.certificate, certificates, replace=True, mode=0o644)
    return LocalCertificate(paths.certificate, paths.key, paths.authority, created=True)
