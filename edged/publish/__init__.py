"""Store-and-forward: results wait in the outbox and leave for the upstream broker when the link is up."""
