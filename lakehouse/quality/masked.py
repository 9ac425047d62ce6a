"""The rule every masked PII column obeys, shared by the current-state and history contracts."""

from __future__ import annotations

import pandera.pandas as pa

from lakehouse.declarations.pii import PiiPolicy
from lakehouse.transforms.masking import TOKEN_PREFIX

HEX64 = r"^[0-9a-f]{64}$"  # a hashed PII value (HMAC-SHA256, hex)


def masked_form_checks(policy: PiiPolicy | None) -> list[pa.Check]:
    """A masked column holds only masked values: hashes as hex, tokens with their prefix."""
    if policy is PiiPolicy.HASH:
        return [pa.Check.str_matches(HEX64)]
    if policy is PiiPolicy.TOKENIZE:
        return [pa.Check.str_startswith(TOKEN_PREFIX)]
    return []
