"""The training text: the default one that ships with Python, and its encoding as character ids.

Default text: the documentation topics that Python's ``help()`` shows (``pydoc_data.topics``,
about 465,000 characters of English prose with grammar and code excerpts in Python 3.11). It
ships with CPython, so training runs on a fresh machine without a download. Where a build
lacks ``pydoc_data``, the source of a few pure-Python stdlib modules is used instead
(``DEFAULT_FALLBACK_MODULES``). ``default_text()`` says which one was used.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

__all__ = ["DEFAULT_FALLBACK_MODULES", "default_text", "encode"]

#: Used for the default text when ``pydoc_data`` is missing from the Python build.
DEFAULT_FALLBACK_MODULES: tuple[str, ...] = ("argparse", "textwrap", "string", "fnmatch", "shlex")


def default_text() -> tuple[str, str]:
    """(text, description) of the training text that ships with Python itself.

    The documentation topics of ``pydoc_data.topics`` (what ``help("assert")`` etc. print),
    joined in sorted topic order; if that module is missing, the source of the stdlib modules
    DEFAULT_FALLBACK_MODULES, concatenated.
    """
    version = ".".join(map(str, sys.version_info[:3]))
    try:
        from pydoc_data.topics import topics
    except ImportError:
        topics = None
    if isinstance(topics, dict) and topics and all(isinstance(v, str) for v in topics.values()):
        text = "\n\n".join(topics[k] for k in sorted(topics))
        return text, (
            f"pydoc_data.topics: the {len(topics)} documentation topics shown by help(), "
            f"from Python {version}"
        )
    parts, used = [], []
    for name in DEFAULT_FALLBACK_MODULES:
        spec = importlib.util.find_spec(name)
        loader = None if spec is None else spec.loader
        src = loader.get_source(name) if loader is not None and hasattr(loader, "get_source") else None
        if src:
            parts.append(src)
            used.append(name)
    if not parts:
        raise RuntimeError("no default text: neither pydoc_data nor the stdlib sources are available")
    return "\n\n".join(parts), f"source of the stdlib modules {', '.join(used)} of Python {version}"


def encode(text: str) -> tuple[str, np.ndarray]:
    """(vocab, ids): vocab is the sorted distinct characters of ``text`` (character i has id
    i), ids the (N,) int64 id of each character of ``text``."""
    if not isinstance(text, str) or not text:
        raise ValueError("text: expected a non-empty str")
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    vocab_codes = np.unique(codes)  # sorted
    ids = np.searchsorted(vocab_codes, codes).astype(np.int64)
    vocab = "".join(map(chr, vocab_codes.tolist()))
    return vocab, ids
