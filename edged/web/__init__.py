"""The technician web page, the JSON API, /healthz and /metrics.

Read-only except for two changes, both through the store writer like every source: incident
reports (``kind=incident``, ``via="web"``) and label corrections. Those need the token (a login that
sets a session cookie plus a CSRF token in the form, or ``Authorization: Bearer`` on the JSON API).

Modules: ``server`` (the worker: a threaded stdlib HTTP server), ``request`` (requests, responses,
bounded bodies), ``routes`` (URL -> handler, and the HTML pages' handlers), ``api`` (the JSON API,
/healthz, /metrics), ``auth`` (token, sessions, CSRF), ``queries`` (read-only SQL), ``snapshot`` (the
status figures the page, the API and /metrics share), ``actions`` (the two changes), ``runtime`` (the
daemon's workers as their read-only view, edged.parts), ``metrics`` (Prometheus text), ``html``
(escaping) and ``pages`` (the HTML). Everything from logs is attacker-controlled: it is escaped by
``html.fmt`` and never put into a script.
"""
