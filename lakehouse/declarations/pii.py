"""How a PII column is masked on entry to silver, as ``sources.yml`` declares it.

The masking itself (keys, HMAC, AES-SIV) is ``lakehouse.transforms.masking``.
"""

from enum import StrEnum


class PiiPolicy(StrEnum):
    HASH = "hash"
    TOKENIZE = "tokenize"
    REDACT = "redact"
