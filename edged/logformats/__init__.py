"""Log header formats: splitting a line into header fields (time, level, host, component, pid) and its message.

A leaf package (standard library only), so the sources, the analysis and the CLI can all use it.
"""

from edged.logformats.detect import AUTO, HeaderParser, Parsed, StreamFormat, resolve_spec
from edged.logformats.formats import BY_NAME, FIELDS, FORMATS, JsonFormat, LogFormat, compile_format

__all__ = [
    "AUTO", "BY_NAME", "FIELDS", "FORMATS", "HeaderParser", "JsonFormat", "LogFormat", "Parsed", "StreamFormat",
    "compile_format", "resolve_spec",
]
