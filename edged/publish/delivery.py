"""The publisher's outbox queries. The outbox table is owned by ``edged.store.outbox``; these names
are kept here for code that imported them from the publishing side."""

from edged.store.outbox import EXPIRE_BATCH, Delivered, expire_sent, mark_sent, read_unsent, upstream_status

__all__ = ["EXPIRE_BATCH", "Delivered", "expire_sent", "mark_sent", "read_unsent", "upstream_status"]
