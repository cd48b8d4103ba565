"""Analysis with the real default model: edged against raw llama-cpp-python, all in one run.

- (a) ``throughput``: records/s of edged's analyzer (a real StoreWriter on a temp SQLite file, records
  inserted, ``Analyzer.run_once`` until the inbox is empty; classify + extract per new template) over
  ~40 Loghub lines that are each a new template, against a raw loop calling
  ``llama_cpp.Llama.create_chat_completion`` with the same messages, grammar, max_tokens, order,
  threads and n_ctx. The two run interleaved batch by batch, so load from other work hits both alike.
- (b) ``templates``: model calls per template. First every Loghub system (2,000 lines each) through the
  real pipeline with a call-counting scripted backend (the routing does not depend on the answers);
  then three systems with the real model, for effective lines/s with the template cache against one
  model analysis per line (estimated from the measured per-record model time: running the model on
  all 6,000 lines would take over an hour on the dev box).
- (c) ``generation``: decode tokens/s of edged's backend against raw llama-cpp-python on the same
  summarize request (max_tokens 64), with the same grammar and without any.
- (d) ``cold_start``: ``python -m edged run`` as a subprocess with a temp config (default model,
  llama_cpp): seconds until the "ready" log line, and peak RSS (VmHWM) after a few records are analyzed.
- (e) ``bgl_eval``: ``edged eval`` on BGL 2k, alert (first field not ``-``) vs normal, with the configured
  taxonomy mapped to alert/normal and with the binary taxonomy (``--labels-from-data``).

Loghub is read at run time from ../shared/data/loghub (never copied here); without it (a) and (b) use
synthetic lines and (e) is skipped. Run: ``python -m bench.analysis [--quick] [--parts a,b,c,d,e]``.

One module per part (throughput, calls_per_template, generation, cold_start, bgl_eval), the data and
the side-by-side harness they share (data, harness), and ``run`` (options, orchestration, summary).
"""

from bench.analysis.run import SMOKE_ARGS, main, summary_lines

NEEDS_MODEL = True  # every part runs the default model

__all__ = ["NEEDS_MODEL", "SMOKE_ARGS", "main", "summary_lines"]
