"""Chat's HTTP API under /api/v1."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from ultrachat.auth.dependencies import Claims
from ultrachat.chat.channels import ChannelService
from ultrachat.chat.messages import MAX_PAGE, MessageService
from ultrachat.chat.schemas import (
    MAX_SEQ,
    ChannelCreate,
    ChannelList,
    ChannelOut,
    ChannelPatch,
    MemberAdd,
    MemberList,
    MemberRole,
    MessageCreate,
    MessageEdit,
    MessageOut,
    MessagePage,
    ReadMarker,
)
from ultrachat.gateway.openapi import error_responses

router = APIRouter(prefix="/api/v1", tags=["chat"])


def _channels(request: Request) -> ChannelService:
    service: ChannelService = request.app.state.runtime.channels
    return service


def _messages(request: Request) -> MessageService:
    service: MessageService = request.app.state.runtime.messages
    return service


Channels = Annotated[ChannelService, Depends(_channels)]
Messages = Annotated[MessageService, Depends(_messages)]
ChannelId = Annotated[str, Path(min_length=1, max_length=36)]
MessageId = Annotated[str, Path(min_length=1, max_length=36)]
UserId = Annotated[str, Path(min_length=1, max_length=36)]
NO_CONTENT = status.HTTP_204_NO_CONTENT
READ_ERRORS = error_responses(401, 403, 404)
WRITE_ERRORS = error_responses(401, 403, 404, 422)


# Channels


@router.post(
    "/channels",
    status_code=status.HTTP_201_CREATED,
    response_model=ChannelOut,
    responses={200: {"model": ChannelOut, "description": "the existing DM"}, **WRITE_ERRORS},
)
async def create_channel(body: ChannelCreate, claims: Claims, channels: Channels) -> Any:
    channel, created = await channels.create(claims.user_id, body)
    if created:
        return channel
    return JSONResponse(ChannelOut(**channel).model_dump(mode="json"), status_code=200)


@router.get("/channels", responses=READ_ERRORS)
async def list_channels(
    claims: Claims,
    channels: Channels,
    browse: Annotated[bool, Query(description="list every public channel instead")] = False,
) -> ChannelList:
    if browse:
        return ChannelList.model_validate({"channels": await channels.list_public()})
    return ChannelList.model_validate({"channels": await channels.list_mine(claims.user_id)})


@router.get("/channels/{channel_id}", responses=READ_ERRORS)
async def get_channel(channel_id: ChannelId, claims: Claims, channels: Channels) -> ChannelOut:
    return ChannelOut(**await channels.get(claims.user_id, channel_id))


@router.patch("/channels/{channel_id}", responses=WRITE_ERRORS)
async def update_channel(
    channel_id: ChannelId, body: ChannelPatch, claims: Claims, channels: Channels
) -> ChannelOut:
    return ChannelOut(**await channels.update(claims.user_id, channel_id, body))


@router.post("/channels/{channel_id}/join", responses=WRITE_ERRORS)
async def join_channel(channel_id: ChannelId, claims: Claims, channels: Channels) -> ChannelOut:
    return ChannelOut(**await channels.join(claims.user_id, channel_id))


@router.post("/channels/{channel_id}/leave", status_code=NO_CONTENT, responses=WRITE_ERRORS)
async def leave_channel(channel_id: ChannelId, claims: Claims, channels: Channels) -> None:
    await channels.leave(claims.user_id, channel_id)


@router.get("/channels/{channel_id}/members", responses=READ_ERRORS)
async def list_members(channel_id: ChannelId, claims: Claims, channels: Channels) -> MemberList:
    return MemberList.model_validate(
        {"members": await channels.members(claims.user_id, channel_id)}
    )


@router.post("/channels/{channel_id}/members", responses=WRITE_ERRORS)
async def invite_member(
    channel_id: ChannelId, body: MemberAdd, claims: Claims, channels: Channels
) -> ChannelOut:
    return ChannelOut(**await channels.invite(claims.user_id, channel_id, body.user_id))


@router.delete(
    "/channels/{channel_id}/members/{user_id}", status_code=NO_CONTENT, responses=WRITE_ERRORS
)
async def remove_member(
    channel_id: ChannelId, user_id: UserId, claims: Claims, channels: Channels
) -> None:
    await channels.remove(claims.user_id, channel_id, user_id)


@router.patch(
    "/channels/{channel_id}/members/{user_id}", status_code=NO_CONTENT, responses=WRITE_ERRORS
)
async def set_member_role(
    channel_id: ChannelId, user_id: UserId, body: MemberRole, claims: Claims, channels: Channels
) -> None:
    await channels.set_role(claims.user_id, channel_id, user_id, body.role)


@router.post("/channels/{channel_id}/read", responses=WRITE_ERRORS)
async def mark_read(
    channel_id: ChannelId, body: ReadMarker, claims: Claims, channels: Channels
) -> dict[str, Any]:
    return await channels.mark_read(claims.user_id, channel_id, body.seq)


# Messages


@router.post(
    "/channels/{channel_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={200: {"model": MessageOut, "description": "a retry: the original"}, **WRITE_ERRORS},
)
async def send_message(
    channel_id: ChannelId, body: MessageCreate, claims: Claims, messages: Messages
) -> Any:
    message, created = await messages.send(
        claims.user_id, channel_id, body.body, body.client_msg_id, body.thread_id
    )
    if created:
        return message
    return JSONResponse(MessageOut(**message).model_dump(mode="json"), status_code=200)


@router.get("/channels/{channel_id}/messages", response_model=MessagePage, responses=READ_ERRORS)
async def history(
    channel_id: ChannelId,
    claims: Claims,
    messages: Messages,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    before_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    rows = await messages.history(claims.user_id, channel_id, after_seq, before_seq, limit)
    # The hottest read: the rows are already the API's shape (presenter.message_dict), so
    # they are encoded directly instead of being validated again, message by message.
    return Response(orjson.dumps({"messages": rows}), media_type="application/json")


@router.get("/channels/{channel_id}/pins", responses=READ_ERRORS)
async def pins(channel_id: ChannelId, claims: Claims, messages: Messages) -> MessagePage:
    return MessagePage.model_validate({"messages": await messages.pins(claims.user_id, channel_id)})


@router.get("/messages/{message_id}", responses=READ_ERRORS)
async def get_message(message_id: MessageId, claims: Claims, messages: Messages) -> MessageOut:
    return MessageOut(**await messages.get(claims.user_id, message_id))


@router.patch("/messages/{message_id}", responses=WRITE_ERRORS)
async def edit_message(
    message_id: MessageId, body: MessageEdit, claims: Claims, messages: Messages
) -> MessageOut:
    return MessageOut(**await messages.edit(claims.user_id, message_id, body.body))


@router.delete("/messages/{message_id}", status_code=NO_CONTENT, responses=WRITE_ERRORS)
async def delete_message(message_id: MessageId, claims: Claims, messages: Messages) -> None:
    await messages.delete(claims.user_id, message_id)


@router.get("/messages/{message_id}/thread", responses=READ_ERRORS)
async def thread(message_id: MessageId, claims: Claims, messages: Messages) -> MessagePage:
    return MessagePage.model_validate(
        {"messages": await messages.thread(claims.user_id, message_id)}
    )


@router.put(
    "/messages/{message_id}/reactions/{emoji}", status_code=NO_CONTENT, responses=WRITE_ERRORS
)
async def add_reaction(
    message_id: MessageId,
    emoji: Annotated[str, Path(max_length=64)],
    claims: Claims,
    messages: Messages,
) -> None:
    await messages.react(claims.user_id, message_id, emoji, add=True)


@router.delete(
    "/messages/{message_id}/reactions/{emoji}", status_code=NO_CONTENT, responses=WRITE_ERRORS
)
async def remove_reaction(
    message_id: MessageId,
    emoji: Annotated[str, Path(max_length=64)],
    claims: Claims,
    messages: Messages,
) -> None:
    await messages.react(claims.user_id, message_id, emoji, add=False)


@router.post("/messages/{message_id}/pin", status_code=NO_CONTENT, responses=WRITE_ERRORS)
async def pin(message_id: MessageId, claims: Claims, messages: Messages) -> None:
    await messages.pin(claims.user_id, message_id, pinned=True)


@router.delete("/messages/{message_id}/pin", status_code=NO_CONTENT, responses=WRITE_ERRORS)
async def unpin(message_id: MessageId, claims: Claims, messages: Messages) -> None:
    await messages.pin(claims.user_id, message_id, pinned=False)
