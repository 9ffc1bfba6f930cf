"""The MIME message of one email: multipart/alternative (text + HTML), UTF-8, CRLF.

Headers: ``From``, ``To`` (display names encoded; CR, LF and other control characters in them are
replaced, so customer data can never add a header), ``Subject``, ``Date``, ``Message-ID``
(derived from the idempotency key: a retry carries the same id), ``List-Unsubscribe`` (https and
optionally mailto) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058).

:func:`build_raw` writes the wire bytes directly (the ``email`` package's generator costs
milliseconds per message): 7-bit throughout — non-ASCII header text as RFC 2047 encoded words
(base64, at most 75 characters each), long headers folded, both parts quoted-printable, every
line ending in CRLF. An HTML given in pieces (a layout's static parts around the values) is
encoded piece by piece and joined by soft line breaks, the static pieces once. The multipart
boundary starts with ``=_``, which quoted-printable content can never contain (``=`` is always
encoded there). :func:`build_message` is the same message as an
:class:`~email.message.EmailMessage`, parsed back.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from typing import Protocol

from personify.errors import PersonifyError, Terminal
from personify.messages import RenderedEmail

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+$")
_ATOMS = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$")  # a phrase needing no quotes
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
_LINE = 78  # preferred header line length (RFC 5322 2.1.1); 998 is the hard limit
_WORD_BYTES = 45  # UTF-8 bytes per encoded word: 60 base64 characters + 12 = 72 <= 75


class AddressError(PersonifyError, Terminal):
    """An email address that cannot be used (empty, malformed, or carrying line breaks)."""


@dataclass(frozen=True)
class Unsubscribe:
    """The unsubscribe links of one email (the token already signed)."""

    url: str
    mailto: str | None = None
    preferences: str | None = None
    """The preference page of the same token (``{{ preferences_url }}``), if known."""


class Named(Protocol):
    """A mailbox: :class:`~email.headerregistry.Address` or :class:`Mailbox`."""

    @property
    def display_name(self) -> str: ...

    @property
    def addr_spec(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A checked address and its display name (cheaper to make than ``Address``)."""

    addr_spec: str
    display_name: str = ""

    @property
    def domain(self) -> str:
        return self.addr_spec.rpartition("@")[2]


def _clean_name(name: str | None) -> str:
    return _CONTROL.sub(" ", name or "").strip()


def _checked(email: str) -> str:
    addr = (email or "").strip()
    if not _ADDR.match(addr):
        raise AddressError(f"not a usable email address: {addr!r}")
    if not addr.isascii():
        local, _, domain = addr.rpartition("@")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressError(f"not a usable email address: {addr!r}") from None
        if not local.isascii():
            raise AddressError(
                "an address with a non-ASCII local part needs SMTPUTF8, which is not supported"
            )
        addr = f"{local}@{domain}"
    return addr


def address(email: str, name: str | None = None) -> Address:
    """A header-safe address: control characters dropped from the name, the address checked."""
    return Address(display_name=_clean_name(name), addr_spec=_checked(email))


@functools.lru_cache(maxsize=256)
def _sender(email: str, name: str | None) -> Mailbox:
    return Mailbox(_checked(email), _clean_name(name))


def sender_mailbox(email: str, name: str | None = None) -> Mailbox:
    """:func:`mailbox` for the few sender addresses of a project (checked once, remembered)."""
    return _sender(email, name)


def mailbox(email: str, name: str | None = None) -> Mailbox:
    """Like :func:`address`, as a :class:`Mailbox` (what the hot path uses)."""
    return Mailbox(_checked(email), _clean_name(name))


def message_id(key: str | None, domain: str) -> str:
    """``<hash@domain>`` for an idempotency key (stable across retries), else a fresh one."""
    if key is None:
        return make_msgid(domain=domain)
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


# ----------------------------------------------------------------------------------- headers
def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 base64 encoded words, never splitting a character."""
    data = text.encode("utf-8")
    words: list[str] = []
    start = 0
    while True:
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # inside a character
            end -= 1
        words.append(_word(data[start:end]))
        if end >= len(data):
            return words
        start = end


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _fold(name: str, words: list[str], sep: str = " ") -> str:
    """``Name: w1<sep>w2 …`` folded before a word that would pass 78 characters on its line
    (unfolding — removing each CRLF — gives back the words joined by ``sep``)."""
    lines: list[str] = []
    line = f"{name}: {words[0]}"
    for word in words[1:]:
        if len(line) + len(sep) + len(word) > _LINE:
            lines.append(line + sep.rstrip())
            line = " " + word
        else:
            line += sep + word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _text_header(name: str, value: str) -> str:
    """An unstructured header (``Subject``): plain folded ASCII, else encoded words."""
    value = _CONTROL.sub(" ", value)
    words = value.split(" ")
    if (
        _PRINTABLE.match(value)
        and "=?" not in value
        and value == value.strip()
        and "  " not in value
        and all(len(w) < 900 for w in words)
    ):
        return _fold(name, words)
    return _fold(name, _encoded_words(value))


def _mailbox_header(name: str, boxes: list[Named]) -> str:
    parts: list[str] = []
    for box in boxes:
        display = _clean_name(box.display_name)
        addr = _checked(box.addr_spec)
        if not display:
            parts.append(addr)
        elif _ATOMS.match(display) and "=?" not in display and len(display) < 900:
            parts.append(f"{display} <{addr}>")
        elif display.isascii() and _PRINTABLE.match(display) and len(display) < 900:
            quoted = display.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{quoted}" <{addr}>')
        else:
            parts.append(" ".join(_encoded_words(display)) + f" <{addr}>")
    words = [w for p in parts for w in p.split(" ")]
    return _fold(name, words)


# -------------------------------------------------------------------------------------- parts
def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (soft breaks included)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True)
    if b" \n" in data or b"\t\n" in data:  # b2a_qp encodes that blank past the 76th column
        encoded = _rewrapped(encoded)
    return encoded.replace(b"\n", b"\r\n")


def _escape_safe(encoded: bytes, cut: int) -> int:
    """``cut``, or the start of the ``=XX`` escape it would split (a soft line break goes there)."""
    if encoded[cut - 1 : cut] == b"=":
        return cut - 1
    if encoded[cut - 2 : cut - 1] == b"=":
        return cut - 2
    return cut


def _rewrapped(encoded: bytes) -> bytes:
    """``encoded`` (quoted-printable, LF) with each line longer than 76 characters broken by
    soft line breaks, never inside an ``=XX`` escape."""
    out: list[bytes] = []
    for line in encoded.split(b"\n"):
        while len(line) > 76:
            cut = _escape_safe(line, 75)
            out.append(line[:cut] + b"=")
            line = line[cut:]
        out.append(line)
    return b"\n".join(out)


def _qp_segment(text: str) -> bytes:
    """:func:`_qp` with a last line short enough to take a soft line break (``=``). A dot that
    the break would leave at the start of the new line is written ``=2E``: alone there (76
    characters ending in ``.``), it would end the SMTP ``DATA``."""
    encoded = _qp(text)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start <= 75:
        return encoded
    cut = _escape_safe(encoded, start + 75)
    tail = encoded[cut:]
    if tail.startswith(b"."):
        tail = b"=2E" + tail[1:]
    return encoded[:cut] + b"=\r\n" + tail


_STATIC_MIN = 256
_STATIC_MAX = 512
_static_qp: dict[str, bytes] = {}


def _qp_pieces(pieces: tuple[str, ...]) -> bytes:
    """Quoted-printable of the join of ``pieces``: each piece encoded on its own, joined by soft
    line breaks (which decoders remove). Long even-numbered pieces — a layout's static HTML, the
    same string for every email — are encoded once and remembered."""
    out: list[bytes] = []
    for i, piece in enumerate(pieces):
        if not piece:
            continue
        if i % 2 == 0 and len(piece) >= _STATIC_MIN:
            encoded = _static_qp.get(piece)
            if encoded is None:
                encoded = _qp_segment(piece)
                if len(_static_qp) >= _STATIC_MAX:
                    _static_qp.clear()
                _static_qp[piece] = encoded
        else:
            encoded = _qp_segment(piece)
        out.append(encoded)
    return b"=\r\n".join(out)


_SOFT = b"=\r\n"
_Encoded = tuple[bytes, int, int, bool]
"""A piece's quoted-printable: the bytes, the length of its first and of its last line, and
whether it has more than one line."""
_pieces_qp: dict[str, _Encoded] = {}
_values_qp: dict[str, _Encoded] = {}
_PIECES_MAX = 8192


def _encoded(piece: str) -> _Encoded:
    encoded = _qp_segment(piece)
    first = encoded.find(b"\r\n")
    if first < 0:
        return encoded, len(encoded), len(encoded), False
    return encoded, first, len(encoded) - encoded.rfind(b"\n") - 1, True


def _qp_joined(pieces: tuple[str, ...], static: AbstractSet[str]) -> bytes:
    """Quoted-printable of the join of ``pieces`` whose ``static`` ones (a template's own text,
    the same strings for every email of a version) are encoded once and remembered: each piece
    is encoded on its own and they are joined on one line while it stays within 76 characters,
    else across a soft line break (which decoders remove). Plain values — printable ASCII
    without ``=``, not starting with ``.`` or ending in a blank — are their own encoding (cut
    by soft breaks when long: a tracked link); short other values are remembered too (a
    currency sign, a product name: the same in many emails)."""
    out: list[bytes] = []
    put = out.append
    column = 0  # characters on the current line so far (at most 75: a soft break still fits)
    cache, values = _pieces_qp, _values_qp
    for piece in pieces:
        encoded = cache.get(piece) or values.get(piece)
        if encoded is None:
            size = len(piece)
            if not size:
                continue
            if (
                piece.isascii()
                and piece.isprintable()
                and "=" not in piece
                and piece[0] != "."
                and piece[-1] != " "
            ):
                if column + size <= 75:
                    put(piece.encode("ascii"))
                    column += size
                    continue
                if size <= 75:
                    put(_SOFT)
                    put(piece.encode("ascii"))
                    column = size
                    continue
                if piece[-1] != ".":  # (a last piece of one "." could stand alone on a line)
                    data = piece.encode("ascii")
                    cut = 75 - column
                    put(data[:cut])
                    while size - cut > 75:
                        put(_SOFT)
                        put(data[cut : cut + 75])
                        cut += 75
                    put(_SOFT)
                    put(data[cut:])
                    column = size - cut
                    continue
            encoded = _encoded(piece)
            into = cache if piece in static else values if size <= 64 else None
            if into is not None:
                if len(into) >= _PIECES_MAX:
                    into.clear()
                into[piece] = encoded
        data, first, last, lines = encoded
        if column and column + first > 75:
            put(_SOFT)
            column = 0
        put(data)
        column = last if lines else column + first
    return b"".join(out)


@functools.lru_cache(maxsize=256)
def _template_header(template: str, version: str) -> str:
    return _text_header("X-Personify-Template", f"{template}@{version}")


@functools.lru_cache(maxsize=64)
def _date(when: datetime) -> str:
    return format_datetime(when)


@functools.lru_cache(maxsize=64)
def _sender_header(name: str, addr_spec: str, display_name: str) -> str:
    return _mailbox_header(name, [Mailbox(addr_spec, display_name)])


def build_raw(
    email: RenderedEmail,
    *,
    sender: Named,
    recipient: Named,
    date: datetime | str,
    key: str | None = None,
    unsubscribe: Unsubscribe | None = None,
    reply_to: Named | None = None,
) -> bytes:
    """The message as it will be sent: wire bytes, CRLF, 7-bit. ``date`` may be given already
    formatted (RFC 5322), so a batch formats its one instant once."""
    domain = sender.addr_spec.rpartition("@")[2] or "personify.invalid"
    mid = message_id(key, domain)
    head = [
        _sender_header("From", sender.addr_spec, sender.display_name),
        _mailbox_header("To", [recipient]),
    ]
    if reply_to is not None:
        head.append(_sender_header("Reply-To", reply_to.addr_spec, reply_to.display_name))
    head.append(_text_header("Subject", email.subject))
    head.append(f"Date: {date if isinstance(date, str) else _date(date)}\r\n")
    head.append(f"Message-ID: {mid}\r\n")
    if unsubscribe is not None:
        links = [f"<{_CONTROL.sub('', unsubscribe.url)}>"]
        if unsubscribe.mailto:
            links.append(f"<mailto:{_CONTROL.sub('', unsubscribe.mailto)}?subject=unsubscribe>")
        head.append(_fold("List-Unsubscribe", links, sep=", "))
        head.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    head.append(_template_header(email.template, email.version))
    boundary = "=_" + mid[1:25]
    head.append("MIME-Version: 1.0\r\n")
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
    part = (
        f'--{boundary}\r\nContent-Type: text/%s; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return b"".join(
        (
            "".join(head).encode("ascii"),
            (part % "plain").encode("ascii"),
            _qp(email.text),
            b"\r\n",
            (part % "html").encode("ascii"),
            _html_qp(email),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )


_FIELD_END = re.compile(rb"\r\n(?![ \t])")  # a CRLF not followed by a folded line's space


def readdressed(
    raw: bytes,
    *,
    recipient: Named,
    subject: str,
    key: str,
    domain: str,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """``raw`` (wire bytes, as :func:`build_raw` writes them) sent to ``recipient`` alone, with
    ``subject``, a ``Message-ID`` of ``key`` at ``domain`` and ``extra`` headers (``(name,
    value)``, replacing any of that name) — every other header and the body byte for byte as
    they were (re-serializing with the ``email`` package would re-encode long headers such as
    ``List-Unsubscribe`` into encoded words mail clients do not read there)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    new = {
        b"to": _mailbox_header("To", [recipient]),
        b"subject": _text_header("Subject", subject),
        b"message-id": f"Message-ID: {message_id(key, domain)}\r\n",
    }
    added = {name.lower().encode("ascii") for name, _ in extra}
    out: list[bytes] = []
    for field in _FIELD_END.split(head):
        name = field.split(b":", 1)[0].strip().lower()
        if name in new:
            out.append(new.pop(name).encode("ascii"))
        elif name not in added:
            out.append(field + b"\r\n")
    out += [v.encode("ascii") for v in new.values()]
    out += [_text_header(name, value).encode("ascii") for name, value in extra]
    return b"".join(out) + b"\r\n" + body


def _html_qp(email: RenderedEmail) -> bytes:
    if not email.html_pieces or "\r" in email.html:  # a CR could pair across pieces
        return _qp(email.html)
    if email.static_pieces:
        return _qp_joined(email.html_pieces, email.static_pieces)
    return _qp_pieces(email.html_pieces)


def build_message(
    email: RenderedEmail,
    *,
    sender: Named,
    recipient: Named,
    date: datetime,
    key: str | None = None,
    unsubscribe: Unsubscribe | None = None,
    reply_to: Named | None = None,
) -> EmailMessage:
    """:func:`build_raw` parsed back (``message.as_bytes()`` gives CRLF wire format)."""
    raw = build_raw(
        email,
        sender=sender,
        recipient=recipient,
        date=date,
        key=key,
        unsubscribe=unsubscribe,
        reply_to=reply_to,
    )
    parsed = BytesParser(policy=policy.SMTP).parsebytes(raw.replace(b"\r\n", b"\n"))
    assert isinstance(parsed, EmailMessage)
    return parsed
