"""Build the embedded `stdlib` dataset: call signature -> first docstring sentence.

    python scripts/build_stdlib_docstrings.py            # rewrite the frozen files
    python scripts/build_stdlib_docstrings.py --check    # exit 1 if a rebuild differs

Docstrings change between Python versions (and a few between platforms), so the
result is frozen in the repository instead of being rebuilt at run time. Only a
rebuild with the same interpreter reproduces it byte for byte; the README next
to the data records which one that was.

The generator, step by step:
1. import each module of MODULES, a fixed list (one that fails to import is an
   error, so the output never silently depends on what happens to be installed);
2. take its public names (`__all__` plus the names without a leading underscore
   defined in the module itself), keeping functions and classes, and for each
   class the public methods defined on it (inherited ones are skipped); an object
   reached under several names keeps the first one in MODULES order, preferring
   its own `__name__` within a module (`array.array`, not `array.ArrayType`);
3. signature: `NAME(PARAMETERS)` from `inspect.signature` where it is available
   (annotations and the `self`/`cls` of methods dropped, a default whose repr
   shows an object, an address or a value of this install (its paths, its
   sysconfig scheme) printed as `...`, parameters longer than 80 characters
   shortened to `(...)`), otherwise just `NAME`;
4. summary: the docstring's first sentence: old-style signature lines such as
   "S.count(sub[, start[, end]]) -> int" skipped, whitespace collapsed, cut at the
   first '.', '!' or '?' followed by a space and a capital (not after "e.g." or
   "i.e."), a final period added when missing;
5. dropped: no docstring; a summary ending with ':' (it introduces a list); an
   example instead of a summary (a doctest, or "For example ..."); fewer than 4
   or more than 40 words; non-ASCII text; deprecation (anywhere in the
   docstring, or a DeprecationWarning on access); a summary that only restates the name (no word
   beyond the name's parts and a few function words);
6. sorted by (signature, summary); the first pair of each signature is kept,
   then the first of each summary; written as one JSON object per line.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import os
import re
import sys
import sysconfig
import warnings
from collections import Counter
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "arkd_bench" / "data" / "embedded"
DATA_NAME = "stdlib_docstrings.jsonl"
BUILT_WITH = (3, 11, 7)

MODULES = """
builtins abc argparse array ast asyncio atexit base64 bdb binascii bisect bz2 calendar cmath cmd
code codecs codeop collections collections.abc colorsys compileall concurrent.futures
configparser contextlib contextvars copy copyreg cProfile csv dataclasses datetime dbm decimal
difflib dis doctest email.charset email.encoders email.errors email.generator email.header
email.headerregistry email.iterators email.message email.parser email.policy email.utils enum
errno faulthandler filecmp fileinput fnmatch fractions ftplib functools gc getopt getpass
gettext glob graphlib gzip hashlib heapq hmac html html.parser http http.client http.cookiejar
http.cookies http.server imaplib importlib importlib.abc importlib.machinery importlib.metadata
importlib.resources importlib.util inspect io ipaddress itertools json keyword linecache locale
logging logging.config logging.handlers lzma mailbox marshal math mimetypes modulefinder
multiprocessing multiprocessing.connection multiprocessing.managers multiprocessing.pool
multiprocessing.process multiprocessing.shared_memory netrc numbers operator optparse os os.path
pathlib pdb pickle pickletools pkgutil platform plistlib poplib pprint profile pstats pty
py_compile pyclbr pydoc queue quopri random re reprlib runpy sched secrets select selectors
shelve shlex shutil signal site smtplib socket socketserver sqlite3 ssl stat statistics string
stringprep struct subprocess symtable sys sysconfig tabnanny tarfile tempfile textwrap threading
time timeit token tokenize tomllib trace traceback tracemalloc tty types typing unicodedata
unittest unittest.mock urllib.error urllib.parse urllib.request urllib.response
urllib.robotparser uuid venv warnings wave weakref webbrowser wsgiref.handlers wsgiref.headers
wsgiref.simple_server wsgiref.util wsgiref.validate xml.dom xml.dom.minidom xml.dom.pulldom
xml.etree.ElementTree xml.sax xml.sax.handler xml.sax.saxutils xml.sax.xmlreader xmlrpc.client
xmlrpc.server zipapp zipfile zipimport zlib zoneinfo
""".split()

MIN_WORDS, MAX_WORDS, MAX_SIGNATURE = 4, 40, 80
# Words that carry no meaning of their own when deciding whether a summary
# merely restates the name (`get_name` -> "Return the name.").
FUNCTION_WORDS = set(
    "a an the of to for in on at by from with and or is are be it its this that as "
    "return returns get gets set sets object value new given if".split()
)
# Old-style signatures of C functions: "S.count(sub[, start[, end]]) -> int" on a
# line of its own, or "D.clear() -> None.  Remove all items from D." before the text.
OLD_SIGNATURE = re.compile(r"^\s*[A-Za-z_][\w.]*\(.*\)\s*(->.*)?$")
INLINE_SIGNATURE = re.compile(r"^[A-Za-z_][\w.]*\([^)]*\)\s*->[^.]*\.\s+(?=[A-Z])")
SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z`'\"(])")
ABBREVIATIONS = ("e.g.", "i.e.", "cf.", "vs.")
# A later paragraph often carries the deprecation ("Deprecated since Python 3.10.").
DEPRECATED = re.compile(
    r"(^|\n|\.\s+)\s*(\.\.\s+)?deprecated\b|\bis deprecated\b|\bdeprecated (since|in|as of)\b", re.IGNORECASE
)


class _Hidden:
    """Stands in for a default whose repr would show an address or the environment."""

    def __repr__(self) -> str:
        return "..."


# Defaults computed from this interpreter's install (`platform.architecture`'s
# executable, `sysconfig`'s scheme) would tie the data to one machine's paths.
LOCAL_VALUES = {
    v for v in (sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                os.path.expanduser("~"), sysconfig.get_default_scheme(), sysconfig.get_paths()["stdlib"])
    if v and len(v) > 1
}


def hidden_default(value) -> bool:
    text = repr(value)
    return bool(re.search(r"<|0x", text)) or any(local in text for local in LOCAL_VALUES)


def signature_text(name: str, obj, is_method: bool) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    params = list(sig.parameters.values())
    if is_method and params and params[0].name in ("self", "cls", "type"):
        params = params[1:]
    cleaned = []
    for p in params:
        p = p.replace(annotation=inspect.Parameter.empty)
        if p.default is not inspect.Parameter.empty and hidden_default(p.default):
            p = p.replace(default=_Hidden())
        cleaned.append(p)
    text = str(sig.replace(parameters=cleaned, return_annotation=inspect.Signature.empty))
    return name + (text if len(text) <= MAX_SIGNATURE else "(...)")


def first_sentence(doc) -> str:
    if not isinstance(doc, str):
        return ""
    paragraphs = [p.strip() for p in inspect.cleandoc(doc).split("\n\n") if p.strip()]
    if paragraphs:
        paragraphs[0] = INLINE_SIGNATURE.sub("", paragraphs[0], count=1)
    while paragraphs and all(OLD_SIGNATURE.match(line) for line in paragraphs[0].splitlines()):
        paragraphs.pop(0)
    if not paragraphs:
        return ""
    text = " ".join(paragraphs[0].split())
    sentence = text
    for match in SENTENCE_END.finditer(text):
        if not text[: match.end()].endswith(ABBREVIATIONS):
            sentence = text[: match.end()]
            break
    if sentence.endswith(":"):
        return sentence  # rejected below, counted as "introduces a list"
    return sentence if sentence[-1] in ".!?" else sentence + "."


def name_words(name: str) -> set[str]:
    parts = re.split(r"[._]|(?<=[a-z])(?=[A-Z])", name)
    words = {p.lower() for p in parts if p}
    return words | {w[:-1] for w in words if w.endswith("s")}


def rejection(row: dict) -> str | None:
    """Why a candidate is dropped, or None to keep it."""
    signature, summary, name = row["signature"], row["summary"], row["name"]
    if not summary:
        return "no docstring"
    if summary.endswith(":"):
        return "introduces a list"
    if ">>>" in summary or summary.startswith("For example"):
        return "example instead of a summary"
    n_words = len(summary.split())
    if n_words < MIN_WORDS:
        return "too short"
    if n_words > MAX_WORDS:
        return "too long"
    if not (signature.isascii() and summary.isascii()):
        return "non-ASCII"
    if row["deprecated"] or re.search(r"deprecat", summary, re.IGNORECASE):
        return "deprecated"
    own = name_words(name)
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", summary)} - FUNCTION_WORDS
    if all(w in own or w.rstrip("s") in own for w in words):
        return "restates the name"
    return None


def public_members(module) -> list[tuple[str, object]]:
    # `__all__` alone misses documented helpers (pydoc's is just ["help"]), so the
    # public names defined in the module itself are added to it.
    names = set(getattr(module, "__all__", None) or ())
    names |= {
        n for n in dir(module)
        if not n.startswith("_") and getattr(getattr(module, n), "__module__", None) == module.__name__
    }
    members = [(n, getattr(module, n, None)) for n in names]
    members = [(n, obj) for n, obj in members if inspect.isclass(obj) or inspect.isroutine(obj)]
    # An object's own name first, so aliases lose the identity dedup.
    return sorted(members, key=lambda m: (m[0] != getattr(m[1], "__name__", m[0]), m[0]))


def class_methods(cls) -> list[tuple[str, object, bool]]:
    """(name, function, takes self or cls) for the public methods defined on `cls` itself."""
    out = []
    for n, attr in sorted(vars(cls).items()):
        func = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
        if not n.startswith("_") and inspect.isroutine(func):
            out.append((n, func, not isinstance(attr, staticmethod)))
    return out


def candidates(modules: list[str]) -> list[dict]:
    seen: set[int] = set()
    rows = []

    def add(name: str, obj, is_method: bool) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            doc = obj.__doc__
        deprecated = any(issubclass(w.category, DeprecationWarning) for w in caught)
        deprecated = deprecated or (isinstance(doc, str) and DEPRECATED.search(doc) is not None)
        rows.append({
            "name": name,
            "signature": signature_text(name, obj, is_method),
            "summary": first_sentence(doc),
            "deprecated": deprecated,
        })

    for mod_name in modules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(mod_name)
        prefix = "" if mod_name == "builtins" else mod_name + "."
        for n, obj in public_members(module):
            add(prefix + n, obj, False)  # a bound method's signature already lacks self
            if inspect.isclass(obj):
                for m, func, is_method in class_methods(obj):
                    add(f"{prefix}{n}.{m}", func, is_method)
    return rows


def build(modules: list[str] = MODULES) -> tuple[list[dict], Counter]:
    dropped: Counter = Counter()
    kept = []
    for row in candidates(modules):
        reason = rejection(row)
        if reason:
            dropped[reason] += 1
        else:
            kept.append({"signature": row["signature"], "summary": row["summary"]})
    kept.sort(key=lambda r: (r["signature"], r["summary"]))
    signatures, summaries, unique = set(), set(), []
    for row in kept:
        if row["signature"] in signatures or row["summary"] in summaries:
            dropped["duplicate"] += 1
            continue
        signatures.add(row["signature"])
        summaries.add(row["summary"])
        unique.append(row)
    return unique, dropped


def render(rows: list[dict]) -> bytes:
    lines = (json.dumps(r, ensure_ascii=True, sort_keys=True, separators=(",", ":")) for r in rows)
    return ("\n".join(lines) + "\n").encode("ascii")


def readme(data: bytes, count: int, dropped: Counter) -> str:
    version = ".".join(map(str, sys.version_info[:3]))
    drops = "; ".join(f"{reason} {n}" for reason, n in sorted(dropped.items()))
    return f"""# Embedded data: `{DATA_NAME}`

Summaries of Python standard-library functions, classes and methods: the
default `stdlib` dataset, so that the quickstart needs no download. Each line is
`{{"signature": ..., "summary": ...}}`, for example
`os.path.join(a, *p)` -> "Join two or more pathname components, inserting '/' as needed.";
the `stdlib` source turns it into the prompt "Summarize what `SIGNATURE` does."
with the summary as the reference.

- Built with: Python {version} on {sys.platform}
- Command: `python scripts/build_stdlib_docstrings.py` (add `--check` to verify that a
  rebuild with the same interpreter gives identical bytes)
- Pairs: {count}
- Dropped: {drops}
- sha256: {hashlib.sha256(data).hexdigest()}
- Licence: the docstrings are part of CPython, distributed under the Python Software
  Foundation License Version 2 (see the `LICENSE` file of the CPython distribution).

Do not edit the data by hand: the tests compare its sha256 with the line above, and
the script's docstring describes every generation and filtering step.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the data and README")
    parser.add_argument("--check", action="store_true", help="compare with the frozen file")
    args = parser.parse_args(argv)
    if sys.version_info[:3] != BUILT_WITH:
        built = ".".join(map(str, BUILT_WITH))
        print(f"warning: the frozen data comes from Python {built}; this is {sys.version.split()[0]}",
              file=sys.stderr)
    rows, dropped = build()
    data = render(rows)
    target = args.out / DATA_NAME
    if args.check:
        same = target.exists() and target.read_bytes() == data
        print(f"{len(rows)} pairs; {'identical to' if same else 'DIFFERENT from'} {target}")
        return 0 if same else 1
    args.out.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    (args.out / "README.md").write_text(readme(data, len(rows), dropped))
    print(f"wrote {len(rows)} pairs ({len(data)} bytes) to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
