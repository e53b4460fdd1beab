"""The one error a failed IAM login raises: its ``reason`` names the check that failed.

The RDS Proxy stand-in answers any of them with MySQL error 1045 (SQLSTATE 28000), like RDS Proxy does,
and logs ``reason`` plus ``detail`` so a developer can see which check refused the client.
"""

from __future__ import annotations

MALFORMED = "malformed token"
BAD_SIGNATURE = "bad signature"
EXPIRED = "expired"
WRONG_HOST = "wrong host"
WRONG_USER = "wrong user"
NOT_AUTHORIZED = "not authorized"

REASONS = (MALFORMED, BAD_SIGNATURE, EXPIRED, WRONG_HOST, WRONG_USER, NOT_AUTHORIZED)

ER_ACCESS_DENIED = 1045
SQLSTATE_ACCESS_DENIED = "28000"


class AuthError(Exception):
    """An IAM login refused by one named check (``reason``, one of ``REASONS``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"reason={reason!r}: allowed one of {', '.join(REASONS)}")
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)

    def client_message(self, user: str) -> str:
        """The text of the 1045 error sent to the client (names the check, never a secret)."""
        return f"Access denied for user '{user}' (IAM authentication failed: {self.reason})"
