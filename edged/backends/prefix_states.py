"""Saved KV-cache states of system-prompt prefixes, for the llama_cpp backend.

llama.cpp reuses the KV cache of the longest prefix a call shares with the previous call. When
the tasks alternate (a line classified, then extracted, then the next line classified), the
previous call was the other task and only the chat template's first tokens are shared, so each
call evaluated its whole system prompt again: on 2 cores most of a classification's time.

``PrefixStates`` keeps, per system prefix (its tokens), a copy of the KV cells of sequence 0 taken
right after that prefix was evaluated (``llama_state_seq_get_data``: the cells of the prefix only,
~23 KB per token for SmolLM2-135M), and writes it back (``llama_state_seq_set_data``) when a later
call starts with the same prefix and the cache holds less of it. The restored cells are the ones
the evaluation produced, byte for byte, so a call answers as it would after evaluating the prefix.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict

log = logging.getLogger(__name__)

MAX_STATES = 4  # classify, extract, summarize, and one spare (a narrowed or changed prompt)


class PrefixStates:
    def __init__(self, lib, llm, limit: int = MAX_STATES) -> None:
        self._lib = lib
        self._llm = llm
        self._limit = limit
        self._states: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self.restored = 0  # calls that took their prefix from a saved state (benchmarks read it)

    def __len__(self) -> int:
        return len(self._states)

    def has(self, prefix: list[int]) -> bool:
        return tuple(prefix) in self._states

    def save(self, prefix: list[int]) -> None:
        """Copy sequence 0's KV cells, which must hold exactly ``prefix`` (evaluated just now)."""
        llm, lib = self._llm, self._lib
        if llm.n_tokens != len(prefix):
            return
        size = lib.llama_state_seq_get_size(llm.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = lib.llama_state_seq_get_data(llm.ctx, buf, size, 0)
        if not written:
            log.debug("llama.cpp returned no state for a prefix of %d tokens", len(prefix))
            return
        key = tuple(prefix)
        self._states[key] = bytes(buf[:written])
        self._states.move_to_end(key)
        while len(self._states) > self._limit:
            self._states.popitem(last=False)

    def restore(self, prefix: list[int]) -> bool:
        """Replace sequence 0 with the saved state of ``prefix``; False (cache emptied) when there is none
        or llama.cpp refuses it."""
        key = tuple(prefix)
        data = self._states.get(key)
        if data is None:
            return False
        llm, lib = self._llm, self._lib
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        llm.n_tokens = 0
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not lib.llama_state_seq_set_data(llm.ctx, buf, len(data), 0):
            log.warning("llama.cpp did not take a saved prefix state back; evaluating the prefix instead")
            del self._states[key]
            llm._ctx.kv_cache_seq_rm(0, 0, -1)
            return False
        llm.input_ids[: len(prefix)] = prefix
        llm.n_tokens = len(prefix)
        self._states.move_to_end(key)
        self.restored += 1
        return True
