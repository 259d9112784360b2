"""Imports every service's models so that one metadata describes the whole schema."""

from ultrachat.audit import models as audit_models
from ultrachat.auth import models as auth_models
from ultrachat.billing import models as billing_models
from ultrachat.chat import models as chat_models
from ultrachat.crypto import models as crypto_models
from ultrachat.monitoring import models as monitoring_models
from ultrachat.preferences import models as preferences_models

__all__ = [
    "audit_models",
    "auth_models",
    "billing_models",
    "chat_models",
    "crypto_models",
    "monitoring_models",
    "preferences_models",
]
