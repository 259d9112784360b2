"""GET and PUT /api/v1/users/me/preferences, on both backends."""

from __future__ import annotations

import httpx
import orjson
from prometheus_client import REGISTRY

from tests.auth.factories import account, assert_error

URL = "/api/v1/users/me/preferences"
EXAMPLE = {
    "theme": "dark",
    "notifications": {"mentions": True, "direct_messages": True, "sound": False},
    "muted_channels": ["01JD0000000000000000000000"],
}


def requests(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_cache_requests_total", {"resource": "user-preferences", "result": result}
    )
    return value or 0.0


async def put(client: httpx.AsyncClient, headers: dict[str, str], body: bytes) -> httpx.Response:
    return await client.put(
        URL, content=body, headers={**headers, "Content-Type": "application/json"}
    )


async def test_preferences_start_empty_and_round_trip(client: httpx.AsyncClient) -> None:
    user = await account(client)
    response = await client.get(URL, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {}
    stored = await put(client, user.headers, orjson.dumps(EXAMPLE))
    assert stored.status_code == 200, stored.text
    assert stored.json() == EXAMPLE
    assert (await client.get(URL, headers=user.headers)).json() == EXAMPLE
    # A PUT replaces the whole object.
    await put(client, user.headers, b'{"theme": "light"}')
    assert (await client.get(URL, headers=user.headers)).json() == {"theme": "light"}


async def test_preferences_are_per_user(client: httpx.AsyncClient) -> None:
    ann, bob = await account(client), await account(client)
    await put(client, ann.headers, b'{"theme": "dark"}')
    assert (await client.get(URL, headers=bob.headers)).json() == {}


async def test_reads_are_cached_and_a_write_is_read_back_at_once(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    await client.get(URL, headers=user.headers)
    hits, misses = requests("hit"), requests("miss")
    for _ in range(5):
        await client.get(URL, headers=user.headers)
    assert requests("hit") - hits == 5
    assert requests("miss") == misses
    for n in range(5):
        await put(client, user.headers, orjson.dumps({"n": n}))
        assert (await client.get(URL, headers=user.headers)).json() == {"n": n}


async def test_sixteen_kib_is_accepted_and_one_byte_more_refused(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    frame = len(b'{"x":""}')
    largest = b'{"x":"' + b"a" * (16 * 1024 - frame) + b'"}'
    assert len(largest) == 16 * 1024
    assert (await put(client, user.headers, largest)).status_code == 200
    response = await put(client, user.headers, largest[:-2] + b'a"}')
    assert_error(response, 413, "payload_too_large")
    # The refused write left the stored preferences alone.
    assert (await client.get(URL, headers=user.headers)).json() == orjson.loads(largest)


async def test_bad_json_and_non_objects_are_422(client: httpx.AsyncClient) -> None:
    user = await account(client)
    for body in (b"", b"{", b"{'theme': 'dark'}", b'{"a": NaN}', b"[" * 2000 + b"]" * 2000):
        assert_error(await put(client, user.headers, body), 422, "invalid_input")
    for body in (b"[]", b'"dark"', b"42", b"null", b"true"):
        error = assert_error(await put(client, user.headers, body), 422, "invalid_input")
        assert "object" in error["message"]


async def test_text_that_postgres_refuses_elsewhere_is_stored(client: httpx.AsyncClient) -> None:
    user = await account(client)
    odd = {"nul": "a\u0000b", "emoji": "😀", "nested": {"deep": [[[{"k": None}]]]}}
    assert (await put(client, user.headers, orjson.dumps(odd))).status_code == 200
    assert (await client.get(URL, headers=user.headers)).json() == odd


async def test_preferences_need_a_valid_access_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(URL), 401, "unauthorized")
    assert_error(await put(client, {}, b"{}"), 401, "unauthorized")
    bogus = {"Authorization": "Bearer not-a-token"}
    assert_error(await client.get(URL, headers=bogus), 401, "unauthorized")
    user = await account(client)
    await client.post("/api/v1/auth/logout", headers=user.headers)
    assert_error(await client.get(URL, headers=user.headers), 401, "unauthorized")


async def test_the_api_is_described_in_openapi(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"get", "put"} <= set(paths[URL])
    assert "413" in paths[URL]["put"]["responses"]
