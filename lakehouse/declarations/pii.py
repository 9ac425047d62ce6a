"""How a PII column is masked on entry to silver, as ``sources.yml`` declares it.

The masking itself (keys, HMAC, AES-SIV) is ``lakehouse.transforms.masking``.
"""

from enum import StrEnum


class PiiPolicy(StrEnum):
    HASH = "hash"
    TOKENIZE = "tokenize"
    REDACT = "redact"


# How a tokenized value starts: what silver's contracts check a tokenized column against,
# declared here so they need not import the masking code (and its cryptography) to say so.
TOKEN_PREFIX = "tok:"
