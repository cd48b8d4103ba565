"""edged: on-device log and incident intelligence for industrial edge boxes."""

__version__ = "0.1.0"
