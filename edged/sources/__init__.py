"""Ingest sources: each turns one kind of input into inbox records handed to the store writer."""
