"""Walking the whole chain: ``ultrachat audit verify``."""

from __future__ import annotations

from dataclasses import dataclass

from ultrachat.audit import repository
from ultrachat.audit.chain import GENESIS, chain_hash
from ultrachat.storage import Database


@dataclass(frozen=True, slots=True)
class Verdict:
    count: int
    bad_seq: int | None = None
    bad_id: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_seq is None


async def verify_chain(db: Database, anchor: tuple[int, str] | None = None) -> Verdict:
    """Check every link, every record's own hash, and the head; stop at the first bad record.

    ``anchor`` (seq, hash), a head saved earlier, starts the walk after that record: for a
    database whose oldest months retention has dropped. ``count`` counts records walked.

    - a seq missing from the sequence: a record was deleted;
    - a record whose ``prev_hash`` is the hash of some other record: records were reordered;
    - a record whose ``prev_hash`` matches no record: the link was edited or its predecessor
      deleted;
    - a record whose content does not hash to its ``hash``: it was edited;
    - a head ahead of the last record: records at the end were deleted.
    """
    start, prev = anchor or (0, GENESIS)
    expected, count = start + 1, 0
    async with db.sessions() as session:
        async for record in repository.walk(session, after=start):
            if record.seq != expected:
                if record.seq > expected:
                    why = f"seq {expected} is missing (deleted)"
                else:
                    why = f"seq {record.seq} appears twice or out of order"
                return Verdict(count, record.seq, record.id, why)
            if record.prev_hash != prev:
                other = await repository.seq_with_hash(session, record.prev_hash)
                why = (
                    f"reordered: it follows seq {other} in the chain, not seq {expected - 1}"
                    if other is not None
                    else "its link to the previous record is broken (edited or deleted)"
                )
                return Verdict(count, record.seq, record.id, why)
            if chain_hash(record.prev_hash, repository.record_content(record)) != record.hash:
                return Verdict(
                    count, record.seq, record.id, "edited: content does not match its hash"
                )
            prev, expected, count = record.hash, expected + 1, count + 1
        head_seq, head_hash = await repository.head(session)
    last = expected - 1
    if head_seq > last:
        why = f"seq {last + 1} to {head_seq} are missing (deleted)"
        return Verdict(count, last + 1, None, why)
    if head_seq == last and head_hash != prev:
        return Verdict(count, last, None, "the last record does not match the chain's head hash")
    return Verdict(count)
