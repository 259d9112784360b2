"""The tamper-evident audit log: security events in one SHA-256 hash chain (docs/security.md)."""

from ultrachat.audit.service import AuditLog

__all__ = ["AuditLog"]
