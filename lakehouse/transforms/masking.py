"""PII masking applied where data enters silver, per column policy from ``sources.yml``.

- ``hash``: HMAC-SHA256 under the secret key, hex. Deterministic, so a hashed column
  stays a usable join and dedup key (``clickstream.user_id`` counts distinct visitors
  in gold exactly as the raw value would), yet cannot be reversed or recomputed
  without the key (a plain SHA-256 of an e-mail address can be brute-forced).
- ``tokenize``: AES-SIV (RFC 5297, deterministic authenticated encryption from
  ``cryptography``), prefixed ``tok:``. Equal values give equal tokens (joinable);
  only the key holder can turn a token back into the value (``detokenize``).
- ``redact``: the value is replaced by ``[REDACTED]`` (null stays null).

The hash and token keys are derived from ``LAKEHOUSE_PII_KEY`` with HKDF, so one
secret serves both without reusing key material across algorithms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lakehouse.declarations.pii import TOKEN_PREFIX, PiiPolicy
from lakehouse.ingest.records import json_object
from lakehouse.settings import Environment, LakehouseSettings, get_settings

REDACTED = "[REDACTED]"
# Obviously not a secret: only used when LAKEHOUSE_ENV is local or ci and no key is set.
DEV_KEY = "dev-only-insecure-pii-key-do-not-use-in-prod"


class PiiKeyMissing(RuntimeError):
    """Production refuses to mask with a made-up key (hashes would not be comparable)."""


def pii_key(settings: LakehouseSettings | None = None) -> bytes:
    settings = settings or get_settings()
    if settings.pii_key is not None and settings.pii_key.get_secret_value():
        return settings.pii_key.get_secret_value().encode()
    if settings.env is Environment.PROD:
        raise PiiKeyMissing(
            "LAKEHOUSE_PII_KEY is not set: production needs the secret key used to hash and "
            "tokenize PII columns (see .env.example); refusing to write silver without it"
        )
    return DEV_KEY.encode()


def _derive(key: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(key)


class Masker:
    """Masks values per policy with keys derived from one secret."""

    def __init__(self, key: bytes) -> None:
        self._hash_key = _derive(key, b"lakehouse pii hash", 32)
        self._siv = AESSIV(_derive(key, b"lakehouse pii token", 64))

    @classmethod
    def from_settings(cls, settings: LakehouseSettings | None = None) -> Masker:
        return cls(pii_key(settings))

    def hash(self, value: str) -> str:
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def tokenize(self, value: str) -> str:
        token = self._siv.encrypt(value.encode(), None)
        return TOKEN_PREFIX + base64.urlsafe_b64encode(token).decode().rstrip("=")

    def detokenize(self, token: str) -> str:
        """The original value of a token; raises ``InvalidTag`` under another key."""
        if not token.startswith(TOKEN_PREFIX):
            raise ValueError("not a token")
        body = token[len(TOKEN_PREFIX) :]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return self._siv.decrypt(raw, None).decode()

    def mask(self, value: Any, policy: PiiPolicy) -> str | None:
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        policy = PiiPolicy(policy)
        if policy is PiiPolicy.HASH:
            return self.hash(text)
        if policy is PiiPolicy.TOKENIZE:
            return self.tokenize(text)
        return REDACTED

    def mask_column(self, values: Iterable[Any], policy: PiiPolicy) -> list[str | None]:
        cache: dict[Any, str | None] = {}
        out = []
        for value in values:
            if value not in cache:
                cache[value] = self.mask(value, policy)
            out.append(cache[value])
        return out

    def mask_row(self, row: Mapping[str, Any], pii: Mapping[str, PiiPolicy]) -> dict[str, Any]:
        return {k: self.mask(v, pii[k]) if k in pii else v for k, v in row.items()}

    def mask_json_text(self, text: str | None, pii: Mapping[str, PiiPolicy]) -> str | None:
        """A raw JSON payload with its PII fields masked; unparseable text is redacted whole."""
        if text is None or not pii:
            return text
        value = json_object(text)
        if value is None:
            return REDACTED
        return json.dumps(self.mask_row(value, pii), sort_keys=True, default=str)


def mask_frame(df, pii: Mapping[str, PiiPolicy], masker: Masker):
    """``df`` with each declared PII column masked (a copy; absent columns ignored)."""
    out = df.copy()
    for column, policy in pii.items():
        if column in out.columns:
            # pandas' string dtype reads nulls as NaN: they must stay null, not hash "nan"
            values = [None if v is None or v != v else v for v in out[column].tolist()]
            out[column] = masker.mask_column(values, policy)
    return out


def mask_rows(rows: list[dict[str, Any]], pii: Mapping[str, PiiPolicy], masker: Masker):
    """Rows (dicts) with their declared PII columns masked."""
    return [masker.mask_row(row, pii) for row in rows]
