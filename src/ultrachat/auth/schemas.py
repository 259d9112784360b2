"""Request and response bodies of the auth API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields and type coercion: typos fail loudly."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(StrictBody):
    username: str = Field(min_length=3, max_length=32)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=256)


class PasswordChange(StrictBody):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class UserOut(BaseModel):
    id: str
    username: str
    role: str
    created_at: datetime


class RegisteredUser(BaseModel):
    id: str
    username: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
    session_id: str


class SessionOut(BaseModel):
    id: str
    device: str
    ip: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionOut]
