"""Privacy and access (``privacy:``, ``admin_tokens:``): encryption at rest and the admin
tokens, with the checks every token must pass.
"""

from __future__ import annotations

from typing import Literal

from personify.config.base import Name, Secret, _Base, _FieldError


class AdminToken(_Base, frozen=True):
    """A bearer token for admin endpoints, limited to some scopes."""

    name: Name
    """Who holds it (shown in the audit log, never the token)."""
    token: Secret
    """Use ``${VAR}``."""
    scopes: tuple[
        Literal["profiles:read", "privacy", "privacy:masked", "console", "admin"], ...
    ] = ("profiles:read",)
    """``profiles:read`` (profile API), ``privacy`` (export, erase, consent API), ``privacy:masked``
    (the export API only, personal data masked), ``console`` (the marketer console at
    ``/console``; personal data shown only with ``profiles:read`` too), ``admin`` (everything)."""


EncryptedField = Literal[
    "customers.email", "customers.phone", "customers.first_name", "customers.last_name"
]


class PrivacyConfig(_Base, frozen=True):
    """Protection at rest (see README, "Privacy")."""

    encryption_keys: Secret | None = None
    """Key ring for field-level encryption (AES-256-GCM): ``ID:BASE64,…`` of 32-byte keys, the
    first encrypts, every one decrypts (rotation). Use ``${PERSONIFY_ENCRYPTION_KEYS}``; make a key
    with ``personify privacy keygen``. Without it nothing is encrypted."""
    mask_sql: bool = False
    """``personify sql`` masks personal data (emails, phones, names, IPs) in its results unless
    run with ``--no-mask`` — for shared analyst set-ups."""
    confirm_url: str = "http://127.0.0.1:8787/v1/privacy/confirm/"
    """Base of double-opt-in confirmation links (the token is appended); ``personify serve``
    answers them."""
    encrypted_fields: tuple[EncryptedField, ...] = ()
    """``customers`` columns stored encrypted under ``encryption_keys`` (sealed by the privacy
    stage of every run, decrypted where the value is used: rendering and sending, profiles,
    exports); ``email`` and ``phone`` also get a blind index for lookups. Consent proof (IP, user
    agent, form) is always encrypted when there is a key ring. See README, "Privacy"."""
    blind_index_key: Secret | None = None
    """Key of the blind index (HMAC-SHA256 of the normalized email or phone), e.g.
    ``${PERSONIFY_BLIND_INDEX_KEY}``; default: a key derived from ``signing_key``. After changing
    it run ``personify privacy rotate-keys`` (every index is recomputed)."""


def _check_token_names(tokens: tuple[AdminToken, ...], *, has_admin_token: bool) -> None:
    """Admin token names are unique, and none takes ``admin`` — ``admin_token``'s name — while
    ``admin_token`` is set: the audit log (``api:<name>``, ``console:<name>``) and console
    sessions tell tokens apart by name, so a second token of a name would act as the first."""
    seen = {"admin"} if has_admin_token else set()
    for i, token in enumerate(tokens):
        if token.name in seen:
            whose = (
                "admin_token's name (it has every scope)"
                if token.name == "admin" and has_admin_token
                else "another token's name"
            )
            raise _FieldError(
                ("admin_tokens", i, "name"),
                f"an admin token is already named {token.name!r} ({whose}): names must be "
                "unique — give this token another name, or remove the older entry if this one "
                "replaces it",
            )
        seen.add(token.name)


MIN_TOKEN_LENGTH = 20
"""The fewest characters an admin token may have: a short one can be guessed (the wrong-token
limits slow a guess, they do not stop it). ``personify init``'s tokens have 36."""

NEW_TOKEN_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - a command, not a token
"""A command that prints a new random token (43 characters), as the errors suggest."""


def _check_token_lengths(admin_token: Secret | None, tokens: tuple[AdminToken, ...]) -> None:
    """Every admin token (``admin_token``, ``admin_tokens[].token``) set has at least
    :data:`MIN_TOKEN_LENGTH` characters, whether written in the file or read from the
    environment (``${VAR}``); an empty one (``${VAR:-}``) is no token and is not checked. The
    error names the token and its key, never its value nor its length."""
    named: list[tuple[tuple[str | int, ...], str, Secret | None]] = [
        (("admin_token",), "admin", admin_token)
    ]
    named += [(("admin_tokens", i, "token"), t.name, t.token) for i, t in enumerate(tokens)]
    for path, name, secret in named:
        if secret and len(secret.reveal().strip()) < MIN_TOKEN_LENGTH:
            raise _FieldError(
                path,
                f"the admin token {name!r} is shorter than {MIN_TOKEN_LENGTH} characters: a "
                "short token can be guessed. Put a long random token where this one comes from "
                "(its ${VAR} in the environment or the project's .env), e.g. the output of: "
                f"{NEW_TOKEN_COMMAND}",
            )
