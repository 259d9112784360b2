"""User preferences: one free-form JSON object per user (theme, notifications, muted channels).

``GET``/``PUT /api/v1/users/me/preferences``; cached as the plan's ``user-preferences``
resource (docs/cache.md).
"""
