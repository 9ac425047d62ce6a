"""The rule every masked PII column obeys, shared by the current-state and history contracts."""

from __future__ import annotations

from typing import Any

from lakehouse.declarations.pii import TOKEN_PREFIX, PiiPolicy

HEX64 = r"^[0-9a-f]{64}$"  # a hashed PII value (HMAC-SHA256, hex)


def masked_form_checks(policy: PiiPolicy | None) -> dict[str, Any]:
    """A masked column holds only masked values: hashes as hex, tokens with their prefix.

    pandera's built-in checks by name (``lakehouse.quality.policy.Column.checks``).
    """
    if policy is PiiPolicy.HASH:
        return {"str_matches": HEX64}
    if policy is PiiPolicy.TOKENIZE:
        return {"str_startswith": TOKEN_PREFIX}
    return {}
