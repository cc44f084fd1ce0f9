"""Replay tokens: one self-describing string that reproduces a finding.

A token is ``vft1:`` followed by unpadded URL-safe base64 of an lz4 frame (with content
checksum) that holds::

    b"VFT"  magic
    u8      token version (1)
    u16 LE  length of the header
    header  UTF-8 JSON, sorted keys: format (case format version), profile, build (engine build
            identity of the run that made it), engine (which engine failed), mutant (or null),
            signature, strategy (the case's original schedule, as text)
    rest    the canonical case bytes, its schedule resolved: strategy `explicit` with the choices
            the failing engine actually made, so a replay takes the very same interleaving

Decoding is strict: anything else raises `TokenError` with a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

import lz4.frame

from fuzz.case import FORMAT_VERSION, PROFILES, Case, CaseFormatError, decode_strict, encode

PREFIX = "vft1:"
MAGIC = b"VFT"
TOKEN_VERSION = 1


class TokenError(ValueError):
    """Not a replay token this build can read; the message is one line."""


@dataclass(frozen=True)
class Token:
    case: Case
    engine: str
    signature: str
    build: str
    mutant: str | None = None
    strategy: str = ""

    def header(self) -> dict[str, Any]:
        return {
            "build": self.build,
            "engine": self.engine,
            "format": FORMAT_VERSION,
            "mutant": self.mutant,
            "profile": self.case.profile,
            "signature": self.signature,
            "strategy": self.strategy,
        }


def encode_token(token: Token) -> str:
    header = json.dumps(token.header(), sort_keys=True, separators=(",", ":")).encode()
    raw = MAGIC + struct.pack("<BH", TOKEN_VERSION, len(header)) + header + encode(token.case)
    packed = lz4.frame.compress(raw, content_checksum=True)
    return PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def _unpack(text: str) -> bytes:
    text = text.strip()
    if not text.startswith(PREFIX):
        raise TokenError(f"not a vmafuzz replay token (it should start with {PREFIX!r})")
    body = text[len(PREFIX) :]
    try:
        padded = (body + "=" * (-len(body) % 4)).encode("ascii")
        packed = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
        raise TokenError("replay token is not valid base64 (was it cut short?)") from None
    try:
        return bytes(lz4.frame.decompress(packed))
    except RuntimeError:
        raise TokenError("replay token is corrupt (its checksum or framing is wrong)") from None


def decode_token(text: str) -> Token:
    raw = _unpack(text)
    if len(raw) < 6 or raw[:3] != MAGIC:
        raise TokenError("replay token is corrupt (bad magic)")
    version, hlen = struct.unpack_from("<BH", raw, 3)
    if version != TOKEN_VERSION:
        raise TokenError(
            f"unknown replay token version {version} (this build reads {TOKEN_VERSION})"
        )
    try:
        header = json.loads(raw[6 : 6 + hlen])
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise TokenError("replay token is corrupt (bad header)") from None
    if not isinstance(header, dict):
        raise TokenError("replay token is corrupt (bad header)")
    if header.get("format") != FORMAT_VERSION:
        raise TokenError(
            f"replay token holds a case of format version {header.get('format')} "
            f"(this build reads version {FORMAT_VERSION})"
        )
    if header.get("profile") not in PROFILES:
        raise TokenError(f"replay token names unknown kernel profile {header.get('profile')!r}")
    mutant = header.get("mutant")
    if mutant is not None and not isinstance(mutant, str):
        raise TokenError("replay token is corrupt (its mutant is not a name)")
    try:
        case = decode_strict(raw[6 + hlen :])
    except CaseFormatError as e:
        raise TokenError(f"replay token holds a bad case: {e}") from None
    return Token(
        case=case,
        engine=str(header.get("engine", "")),
        signature=str(header.get("signature", "")),
        build=str(header.get("build", "")),
        mutant=mutant,
        strategy=str(header.get("strategy", "")),
    )
