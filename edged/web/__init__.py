"""The technician web page, the JSON API, /healthz and /metrics.

Read-only except for two changes, both through the store writer like every source: incident
reports (``kind=incident``, ``via="web"``) and label corrections. Those need the token (a login that
sets a session cookie plus a CSRF token in the form, or ``Authorization: Bearer`` on the JSON API).

Modules: ``server`` (the worker: a threaded stdlib HTTP server), ``routes`` (URL -> handler),
``auth`` (token, sessions, CSRF), ``queries`` (read-only SQL), ``actions`` (the two changes),
``runtime`` (in-memory state of the daemon's workers), ``metrics`` (Prometheus text), ``html``
(escaping) and ``pages`` (the HTML). Everything from logs is attacker-controlled: it is escaped by
``html.fmt`` and never put into a script.
"""
