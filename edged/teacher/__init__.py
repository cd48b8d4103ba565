"""``edged teacher``: the central side of escalation. It answers the escalations of many boxes with a
bigger model behind an OpenAI-compatible server; each box applies the answer and learns from it
(edged.publish.escalation)."""
