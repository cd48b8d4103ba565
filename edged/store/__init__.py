"""Durable state in one SQLite file: the inbox, file positions, rejected inputs, counters."""

from edged.store.database import open_database
from edged.store.records import FilePosition, NewRecord, Rejected
from edged.store.writer import StoreWriter, WriteBatch

__all__ = ["open_database", "NewRecord", "FilePosition", "Rejected", "StoreWriter", "WriteBatch"]
