"""Generators for Mastodon's secrets, in the exact formats Mastodon's own tools print.

- SECRET_KEY_BASE, OTP_SECRET: 64 random bytes as hex (`bundle exec rails secret`).
- VAPID_PRIVATE_KEY / VAPID_PUBLIC_KEY: an EC P-256 key pair, each urlsafe base64 *with* padding
  (`rake mastodon:webpush:generate_vapid_key`, i.e. the web-push gem's VapidKey: the raw 32-byte private
  scalar and the 65-byte uncompressed public point, `Base64.urlsafe_encode64`).
- ACTIVE_RECORD_ENCRYPTION_*: 32 alphanumeric characters each (`bin/rails db:encryption:init`).
- Database and Redis passwords: alphanumeric only, so they are valid for RDS (no / @ " or space), as an
  ElastiCache AUTH/RBAC password (16-128 printable characters) and inside a redis:// URL without escaping.
- SES SMTP password: derived from an IAM secret access key with the documented SigV4-based algorithm.

Nothing here logs or prints a value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

from tootstack.errors import InvalidInput

_ALPHANUMERIC = string.ascii_letters + string.digits


def hex_secret(nbytes: int = 64) -> str:
    """`rails secret`: 64 random bytes, hex encoded (128 characters)."""
    return secrets.token_hex(nbytes)


def alphanumeric(length: int = 32) -> str:
    """`SecureRandom.alphanumeric(length)`."""
    if length < 1:
        raise InvalidInput("length must be positive")
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")  # padded, like Ruby's Base64.urlsafe_encode64


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vapid_keypair() -> tuple[str, str]:
    """(VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY) for a fresh P-256 key, in Mastodon's encoding."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private_raw = key.private_numbers().private_value.to_bytes(32, "big")
    public_raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    private, public = _b64url(private_raw), _b64url(public_raw)
    check_vapid_pair(private, public)
    return private, public


def check_vapid_pair(private: str, public: str) -> None:
    """Raise InvalidInput unless `public` is the P-256 public key of `private` (both urlsafe base64)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        private_raw = _b64url_decode(private)
        public_raw = _b64url_decode(public)
        key = ec.derive_private_key(int.from_bytes(private_raw, "big"), ec.SECP256R1())
        decoded_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_raw)
    except (ValueError, TypeError):
        raise InvalidInput("VAPID keys are not a urlsafe-base64 P-256 key pair") from None
    derived = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if len(private_raw) != 32 or len(public_raw) != 65 or derived != public_raw or decoded_public.public_numbers() != key.public_key().public_numbers():
        raise InvalidInput("VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY")


# --- SES SMTP password (SigV4-based, version 4) ---------------------------------------------------------
_SMTP_DATE = "11111111"
_SMTP_SERVICE = "ses"
_SMTP_TERMINAL = "aws4_request"
_SMTP_MESSAGE = "SendRawEmail"
_SMTP_VERSION = 0x04


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def ses_smtp_password(secret_access_key: str, region: str) -> str:
    """The SES SMTP password for an IAM secret access key in `region` (SES docs, "Obtaining Amazon SES
    SMTP credentials": HMAC-SHA256 chain over a fixed date, the region, "ses", "aws4_request",
    "SendRawEmail"; version byte 0x04 prepended; standard base64)."""
    if not secret_access_key or not region:
        raise InvalidInput("an SES SMTP password needs a secret access key and a region")
    signature = _sign(("AWS4" + secret_access_key).encode("utf-8"), _SMTP_DATE)
    for part in (region, _SMTP_SERVICE, _SMTP_TERMINAL, _SMTP_MESSAGE):
        signature = _sign(signature, part)
    return base64.b64encode(bytes([_SMTP_VERSION]) + signature).decode("ascii")


# --- the app secrets as one document ---------------------------------------------------------------------
APP_SECRET_KEYS = (
    "SECRET_KEY_BASE",
    "OTP_SECRET",
    "VAPID_PRIVATE_KEY",
    "VAPID_PUBLIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
)


def missing_app_secrets(existing: dict[str, str]) -> dict[str, str]:
    """Values for the app secret keys absent from `existing` (never for present ones). The VAPID pair is
    generated as a pair: if exactly one half exists the document is inconsistent and nothing is generated."""
    new: dict[str, str] = {}
    for key in ("SECRET_KEY_BASE", "OTP_SECRET"):
        if not existing.get(key):
            new[key] = hex_secret(64)
    has_private, has_public = bool(existing.get("VAPID_PRIVATE_KEY")), bool(existing.get("VAPID_PUBLIC_KEY"))
    if has_private != has_public:
        raise InvalidInput(
            "the app secret holds only one half of the VAPID key pair: restore the other half "
            "(or remove both to generate a new pair, which invalidates existing push subscriptions)"
        )
    if not has_private:
        new["VAPID_PRIVATE_KEY"], new["VAPID_PUBLIC_KEY"] = vapid_keypair()
    for key in APP_SECRET_KEYS[4:]:
        if not existing.get(key):
            new[key] = alphanumeric(32)
    return new
