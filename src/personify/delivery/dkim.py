"""DKIM signing (RFC 6376) of outgoing messages, with ``dkimpy``.

The signature covers the headers named in ``delivery.dkim.headers`` — by default ``From``,
``To``, ``Subject``, ``Date``, ``Message-ID``, ``List-Unsubscribe`` and ``List-Unsubscribe-Post``
(RFC 8058 asks that the one-click headers be signed) — and the body, with relaxed/simple
canonicalization and rsa-sha256. The key is an RSA private key in PEM (PKCS#1 or PKCS#8), given
inline from the environment (``private_key: ${DKIM_PRIVATE_KEY}``) or as a file
(``private_key_path``); it is checked when the transport is built, so a bad key fails at start,
not at the first message. Publish the public key at ``SELECTOR._domainkey.DOMAIN``
(:func:`dns_record` prints the TXT value).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from personify.config import DKIM_HEADERS, DkimSettings, Project
from personify.errors import ConfigError


class DkimSigner:
    """Signs wire-format messages (``message.as_bytes()``) for one selector and domain."""

    def __init__(
        self,
        selector: str,
        domain: str,
        private_key_pem: bytes,
        headers: Sequence[str] = DKIM_HEADERS,
    ) -> None:
        self.selector = selector
        self.domain = domain
        self.headers = tuple(headers)
        self._key = _pkcs1(private_key_pem)
        self._include = [h.lower().encode("ascii") for h in self.headers]
        if b"from" not in self._include:
            raise ValueError("a DKIM signature must cover the From header")

    @classmethod
    def from_settings(cls, settings: DkimSettings, project: Project) -> DkimSigner:
        """The signer ``delivery.dkim`` configures. Raises ConfigError on a missing or bad key."""
        file, key = str(project.file), "delivery.dkim"
        if settings.private_key is not None:
            pem = settings.private_key.reveal().replace("\\n", "\n").encode("utf-8")
        else:
            assert settings.private_key_path is not None
            path = project.path(settings.private_key_path)
            try:
                pem = path.read_bytes()
            except OSError as e:
                raise ConfigError(
                    f"cannot read the DKIM private key file {path} ({e.strerror})",
                    hint="set delivery.dkim.private_key_path to a PEM file",
                    file=file,
                    key=key,
                ) from None
        try:
            return cls(settings.selector, settings.domain, pem, settings.headers)
        except ValueError as e:
            raise ConfigError(
                f"unusable DKIM private key: {e}",
                hint="give an RSA private key in PEM form (openssl genrsa 2048)",
                file=file,
                key=key,
            ) from None

    def sign(self, data: bytes) -> bytes:
        """``data`` with a ``DKIM-Signature`` header prepended."""
        import dkim  # type: ignore[import-untyped]

        signature: bytes = dkim.sign(
            data,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self._key,
            canonicalize=(b"relaxed", b"simple"),
            include_headers=self._include,
            linesep=b"\r\n",
        )
        return signature + data


def _pkcs1(pem: bytes) -> bytes:
    """The key as PKCS#1 PEM (what dkimpy reads). Raises ValueError when it is not RSA."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(pem.strip() + b"\n", password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a PEM private key without a passphrase ({e})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"an RSA key is needed, not {type(key).__name__}")
    if key.key_size < 1024:
        raise ValueError("the RSA key must have at least 1024 bits (2048 recommended)")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def dns_record(private_key_pem: bytes) -> str:
    """The TXT record value publishing the public half of ``private_key_pem``."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(_pkcs1(private_key_pem), password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
