"""The ``minilm`` task's text: prose sentences of the Python Language Reference (evaluation and
training) and of the standard library's docstrings (the distillation transfer set).

Every kept sentence appears verbatim in its source once ``*emphasis*`` markers are removed and
whitespace collapsed; sentences are picked by content hash, so the choice is fixed and
seed-independent (see :mod:`slimkit.tasks.minilm`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from slimkit.core.cache import cache_dir
from slimkit.core.files import atomic_path
from slimkit.errors import TaskError

NUM_EVAL = 256
NUM_TRAIN = 256
# Every prose sentence of the stdlib's docstrings fits under this: at equal training compute, the
# whole set distilled a pruned MiniLM closer to the original than a few thousand of them did.
NUM_TRANSFER = 16384

# Bump when the text pipeline, tokenisation or pooling changes so old teacher caches are not reused.
_CACHE_VERSION = 1

_UNDERLINE = re.compile(r"^\s*[*=\-^~#]{3,}\s*$")
_WRAPPED_HYPHEN = re.compile(r"(?<=\w)- (?=\w)")
_LIST_MARKER = re.compile(r"^(?:[*\-]|\d+\.)\s+")
# *emphasis* / **strong**: the markers sit between a space (or "(") and punctuation; a star inside
# a quoted literal such as "*args" is code and must stay (the sentence is then rejected as code).
_EMPHASIS = re.compile(r"(?<![^\s(])\*{1,2}([^\s*\"“](?:[^*\n\"“”]*?[^\s*\"“”])?)\*{1,2}(?=$|[\s.,;:!?)’'-])")
# A sentence ends at . ! or ? (maybe closed by a quote or parenthesis) before a capital or a quote.
_SENTENCE_END = re.compile(r"([.!?][\"”’)]?)\s+(?=[A-Z\"“(])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Mr.", "Dr.", "No.", "approx.", "resp.")
_SKIP_PARAGRAPH = ("Changed in version", "New in version", "Added in version", "Deprecated since",
                   "See also", "Note:", "Footnotes", "[")
# Code, markup and URL tell-tales: a sentence containing any of them is not prose.
_NOT_PROSE = re.compile(r"::|>>>|https?:|www\.|[`|\\{}\[\]<>=@#$^~*_]")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")


def reference_topics() -> dict[str, str]:
    """The Python Language Reference pages bundled with CPython (``pydoc_data.topics``)."""
    try:
        topics = importlib.import_module("pydoc_data.topics").topics
    except ImportError as exc:
        raise TaskError(
            "the minilm task reads its sentences from the Python reference bundled with CPython "
            f"(pydoc_data), which this Python lacks: {exc}",
            hint="use a full CPython install (some distributions split pydoc_data into a separate package)",
        ) from exc
    return dict(topics)


def _paragraphs(text: str, prose_only: bool = True) -> Iterator[str]:
    """Paragraphs of one plain-text reference page, each joined onto one line: the prose ones,
    or (``prose_only=False``) every block but headings, as it stands."""
    for block in re.split(r"\n[ \t]*\n", text):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines or any(_UNDERLINE.match(line) for line in lines):
            continue  # underlined blocks are headings
        if prose_only:
            # Indented blocks are code, grammar, notes' bodies and nested lists.
            if lines[0][:1].isspace():
                continue
            if _LIST_MARKER.match(lines[0]):
                lines[0] = _LIST_MARKER.sub("", lines[0])
            elif len(lines) > 1 and lines[1][:1].isspace():
                lines = lines[1:]  # a definition list: drop the term, keep its indented definition
        # The text writer wraps lines after hyphens ("reference-\ncounting"): rejoin those without a space.
        paragraph = _WRAPPED_HYPHEN.sub("-", " ".join(line.strip() for line in lines))
        if not prose_only or not paragraph.startswith(_SKIP_PARAGRAPH):
            yield _EMPHASIS.sub(r"\1", paragraph)


def _split_sentences(paragraph: str) -> list[str]:
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        head = paragraph[start : match.end(1)]
        if head.endswith(_ABBREVIATIONS):
            continue
        sentences.append(head.strip())
        start = match.end()
    sentences.append(paragraph[start:].strip())
    return sentences


def _is_prose(sentence: str, min_words: int = 6, max_words: int = 60) -> bool:
    if not min_words <= len(sentence.split()) <= max_words:
        return False
    opener = sentence.lstrip("\"“(")
    if not opener[:1].isupper() or not sentence.rstrip("\"”’)").endswith((".", "!", "?")):
        return False
    if _NOT_PROSE.search(sentence):
        return False
    # Quoted spans are code literals in the rendered docs; a few are prose, many are code.
    quoted = _QUOTED.findall(sentence)
    return len(quoted) <= 3 and sum(map(len, quoted)) <= 0.3 * len(sentence)


def extract_sentences(text: str) -> list[str]:
    """Clean prose sentences of one plain-text reference page, in order.

    Example:
        >>> page = "Title\\n*****\\n\\nA *block* is a piece of program text run as a unit.  " \\
        ...        "See below.\\n\\n   x = 1  # code is skipped\\n"
        >>> extract_sentences(page)
        ['A block is a piece of program text run as a unit.']
    """
    return [s for p in _paragraphs(text) for s in _split_sentences(p) if _is_prose(s)]


def corpus_sentences(topics: dict[str, str] | None = None) -> list[str]:
    """Every distinct prose sentence of the reference, pages in sorted order (case-insensitive dedup)."""
    topics = reference_topics() if topics is None else topics
    seen: set[str] = set()
    out = []
    for name in sorted(topics):
        for sentence in extract_sentences(topics[name]):
            if sentence.casefold() not in seen:
                seen.add(sentence.casefold())
                out.append(sentence)
    return out


def reference_extra_sentences(topics: dict[str, str] | None = None,
                              evaluation: Iterable[str] = ()) -> list[str]:
    """Reference-page text the prose filter rejects, for distillation only: the metric's register.

    Indented notes, list items, sentences with quoted code or of 4-5 / 61-80 words: every
    sentence-like piece of the pages that :func:`corpus_sentences` does not keep, minus
    grammar rules (``::=``) and table rows (``|``). Nothing that contains an ``evaluation``
    sentence or is contained in one is kept (case-insensitive), so the evaluation text never
    leaks into training. It gives several times as many pieces as the prose training sentences.

    Example:
        >>> page = ("A *block* is a piece of program text run as a unit.\\n\\n"
        ...         "   Note: this indented note is skipped by the prose filter.\\n")
        >>> reference_extra_sentences({"p": page})
        ['Note: this indented note is skipped by the prose filter.']
    """
    topics = reference_topics() if topics is None else topics
    seen = {s.casefold() for s in corpus_sentences(topics)}
    held_out = [s.casefold() for s in evaluation]
    out = []
    for name in sorted(topics):
        for paragraph in _paragraphs(topics[name], prose_only=False):
            for sentence in _split_sentences(paragraph):
                key = sentence.casefold()
                if (not 4 <= len(sentence.split()) <= 80 or key in seen or "::=" in sentence
                        or "|" in sentence or any(e in key or key in e for e in held_out)):
                    continue
                seen.add(key)
                out.append(sentence)
    return out


def docstring_sentences(root: Path | None = None, limit: int = NUM_TRANSFER) -> list[str]:
    """Prose sentences from the docstrings of Python's standard library, a second English source.

    The distillation transfer set: disjoint in origin from the reference pages the metric is
    scored on. Docstrings are read with :mod:`ast` from the source files, never imported
    (importing every stdlib module has side effects, e.g. ``antigravity`` opens a browser).
    Files in sorted order, the same prose filter as the reference, case-insensitive dedup;
    the ``limit`` sentences with the lowest content hash are kept, so the set is fixed.
    """
    import json
    import sys
    import sysconfig

    root = root or Path(sysconfig.get_paths()["stdlib"])
    # Parsing the whole stdlib takes seconds: the result is cached per Python build and folder.
    key = hashlib.blake2b(f"{sys.version}|{root}|{limit}".encode(), digest_size=8).hexdigest()
    cached = cache_dir() / f"minilm-docstrings-v{_CACHE_VERSION}-{key}.json"
    with contextlib.suppress(OSError, ValueError):
        return list(json.loads(cached.read_text(encoding="utf-8")))
    seen: set[str] = set()
    found = []
    for doc in _stdlib_docstrings(root):
        for sentence in _docstring_prose(doc):
            if sentence.casefold() not in seen:
                seen.add(sentence.casefold())
                found.append(sentence)
    found = sorted(found, key=_content_hash)[:limit]
    with contextlib.suppress(OSError), atomic_path(cached) as tmp:
        tmp.write_text(json.dumps(found), encoding="utf-8")
    return found


def _stdlib_docstrings(root: Path) -> Iterator[str]:
    """The docstrings (module, class, function) of the library's sources under ``root``, files in
    sorted order; tests, IDLE and installed packages are skipped, as are files that do not parse."""
    import ast

    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(p in ("test", "tests", "idlelib", "site-packages", "dist-packages") for p in parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield ast.get_docstring(node) or ""


def _docstring_prose(doc: str) -> Iterator[str]:
    """The prose sentences of one docstring: indented blocks and examples are code."""
    for block in doc.split("\n\n"):
        if block[:1].isspace() or ">>>" in block:
            continue
        paragraph = " ".join(line.strip() for line in block.splitlines())
        for sentence in _split_sentences(paragraph):
            if _is_prose(sentence):
                yield sentence


def _content_hash(sentence: str) -> int:
    return int.from_bytes(hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest(), "big")


def split_sentences(
    sentences: Iterable[str], num_eval: int = NUM_EVAL, num_train: int = NUM_TRAIN
) -> tuple[list[str], list[str]]:
    """Disjoint (evaluation, training) selections, by content hash: fixed, seed-independent.

    Example:
        >>> ev, tr = split_sentences([f"Sentence number {i} is here." for i in range(40)], 5, 5)
        >>> len(ev), len(tr), set(ev).isdisjoint(tr)
        (5, 5, True)
    """
    ranked = sorted(set(sentences), key=_content_hash)
    # The lowest hash bit picks the pool, so a sentence's side never depends on the others.
    eval_pool = [s for s in ranked if _content_hash(s) & 1 == 0]
    train_pool = [s for s in ranked if _content_hash(s) & 1 == 1]
    return eval_pool[:num_eval], train_pool[:num_train]
