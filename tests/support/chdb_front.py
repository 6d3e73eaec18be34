#!/usr/bin/env python3
"""A small ClickHouse HTTP interface in front of chDB, for tests.

chDB runs the ClickHouse engine inside this process. This script puts the
part of ClickHouse's HTTP interface that a ClickHouse client uses in front of
it, so code written against a ClickHouse server can be tested on a machine
that has no ClickHouse server, only the `chdb-core` Python package:

    python3 tests/support/chdb_front.py --port 0 --data-dir /tmp/ch-data

Once bound it prints one line, `chdb-front listening on HOST:PORT`, to stdout
and serves until SIGTERM or SIGINT. The data lives in a persistent chDB
session on --data-dir, so stopping the front (even with SIGKILL) and starting
it again on the same directory keeps every table and row.

What it speaks, as ClickHouse does:

* `GET /ping`, `GET /` without a query, `GET /replicas_status`: `Ok.`
* The SQL comes from the `query` URL parameter and/or the request body. With
  both, the body is appended to the query, except when the query is an
  `INSERT ... FORMAT <fmt>` with no data after it: then the body is the data.
  A body that is itself `INSERT ... FORMAT <fmt>` followed by data is split
  the same way ClickHouse splits it. Insert data is written to a temporary
  file and loaded with `INSERT ... FROM INFILE`, so binary formats such as
  RowBinary arrive byte for byte.
* URL parameters: `database`, `default_format`, `param_<name>` (query
  parameters for `{name:Type}` placeholders); `query_id`, `user`, `password`
  and the other parameters ClickHouse's HTTP handler keeps for itself are
  accepted and ignored; `decompress=1` (a body in ClickHouse's own
  compressed-block framing: LZ4, ZSTD or none, each block checked against
  its CityHash128) and `compress=1` (the answer in that framing, as
  uncompressed blocks) are spoken; everything else is a setting for that one query,
  applied with `SET name = 'value'` in the session and undone afterwards.
  `readonly` is enforced by the front itself (the engine cannot leave
  readonly mode once its session is in it), and `SET readonly` is refused;
  with `readonly=1` the front also hands the query to the engine with a
  per-query `SETTINGS readonly = 1` clause, so the engine's own checks (table
  functions such as `url()` and `file()`, setting changes) apply as on a
  server, and refuses several statements in one request, as a server does.
* `Content-Encoding: gzip`, deflate or zstd request bodies, chunked request
  bodies, HTTP/1.1 keep-alive, and gzip responses when
  `enable_http_compression=1` and the client accepts gzip.
* Errors: the status ClickHouse would use (500 for most, 400 for parse and
  syntax errors, 404 for unknown tables, databases and the like),
  `X-ClickHouse-Exception-Code: N`, and the error text, `Code: N. ...`.

Differences from a real server: every query runs in one engine session, one
at a time; several statements separated by `;` are run rather than refused
(except with `readonly`);
`session_id`, users, roles, quotas and readonly GET requests are not
modelled; no progress headers are sent; responses are sent whole, with a
Content-Length, once the query has finished.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import zlib

import lz4.block
import zstandard
from clickhouse_cityhash.cityhash import CityHash128
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# ---------------------------------------------------------------------------
# Errors

# ClickHouse error codes this front raises itself.
SYNTAX_ERROR = 62
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
UNKNOWN_FORMAT = 73
READONLY = 164
UNKNOWN_COMPRESSION_METHOD = 89
CHECKSUM_DOESNT_MATCH = 40
CANNOT_DECOMPRESS = 271
ZLIB_INFLATE_FAILED = 354
STD_EXCEPTION = 1001

_ERROR_NAMES = {
    SYNTAX_ERROR: "SYNTAX_ERROR",
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    UNKNOWN_FORMAT: "UNKNOWN_FORMAT",
    READONLY: "READONLY",
    UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    CHECKSUM_DOESNT_MATCH: "CHECKSUM_DOESNT_MATCH",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    ZLIB_INFLATE_FAILED: "ZLIB_INFLATE_FAILED",
    STD_EXCEPTION: "STD_EXCEPTION",
}

# The HTTP status ClickHouse's HTTP handler gives an exception code; any code
# not listed here is a 500.
_STATUS_BY_CODE = {}
for _status, _codes in (
    (400, (
        6,    # CANNOT_PARSE_TEXT
        8,    # THERE_IS_NO_COLUMN
        15,   # DUPLICATE_COLUMN
        25,   # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,   # CANNOT_PARSE_QUOTED_STRING
        27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        36,   # BAD_ARGUMENTS
        37,   # UNKNOWN_ELEMENT_IN_AST
        38,   # CANNOT_PARSE_DATE
        41,   # CANNOT_PARSE_DATETIME
        44,   # ILLEGAL_COLUMN
        53,   # TYPE_MISMATCH
        62,   # SYNTAX_ERROR
        72,   # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        123,  # UNKNOWN_TYPE_OF_AST_NODE
        167,  # TOO_DEEP_AST
        168,  # TOO_BIG_AST
        223,  # UNEXPECTED_AST_STRUCTURE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        376,  # CANNOT_PARSE_UUID
        427,  # CANNOT_COMPILE_REGEXP
        441,  # CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING
        675,  # CANNOT_PARSE_IPV4
        676,  # CANNOT_PARSE_IPV6
    )),
    (404, (
        46,   # UNKNOWN_FUNCTION
        47,   # UNKNOWN_IDENTIFIER
        50,   # UNKNOWN_TYPE
        56,   # UNKNOWN_STORAGE
        60,   # UNKNOWN_TABLE
        63,   # UNKNOWN_AGGREGATE_FUNCTION
        73,   # UNKNOWN_FORMAT
        78,   # UNKNOWN_TYPE_OF_QUERY
        81,   # UNKNOWN_DATABASE
        115,  # UNKNOWN_SETTING
        152,  # UNKNOWN_DIRECTION_OF_SORTING
        336,  # UNKNOWN_DATABASE_ENGINE
        511,  # UNKNOWN_ROLE
    )),
    (401, (194,)),            # REQUIRED_PASSWORD
    (403, (192, 193, 497, 516)),  # UNKNOWN_USER, WRONG_PASSWORD, ACCESS_DENIED, AUTHENTICATION_FAILED
    (411, (381,)),            # HTTP_LENGTH_REQUIRED
    (413, (229,)),            # QUERY_IS_TOO_LARGE
    (501, (48,)),             # NOT_IMPLEMENTED
    (503, (76, 209, 439)),    # CANNOT_OPEN_FILE, SOCKET_TIMEOUT, CANNOT_SCHEDULE_TASK
):
    for _code in _codes:
        _STATUS_BY_CODE[_code] = _status


class QueryError(Exception):
    """An error to send to the client, with its ClickHouse code."""

    def __init__(self, code, text):
        super().__init__(text)
        self.code = code
        self.text = text

    @classmethod
    def make(cls, code, message):
        name = _ERROR_NAMES.get(code, "UNKNOWN_EXCEPTION")
        return cls(code, f"Code: {code}. DB::Exception: {message}. ({name})")

    @property
    def status(self):
        return _STATUS_BY_CODE.get(self.code, 500)


_CODE_RE = re.compile(r"Code: (\d+)\.")
_NESTED_PREFIX_RE = re.compile(r"^(Code: (\d+)\. DB::Exception: )(?:Code: \2\. DB::Exception: )+")


def error_from_engine(exc):
    """Turn an exception raised by chDB into a QueryError."""
    text = str(exc).strip()
    match = _CODE_RE.search(text)
    if not match:
        return QueryError.make(STD_EXCEPTION, text or type(exc).__name__)
    code = int(match.group(1))
    if match.start() != 0:
        text = text[match.start():]
    # chDB wraps some errors in the same "Code: N. DB::Exception:" twice or
    # three times; ClickHouse's server shows it once.
    text = _NESTED_PREFIX_RE.sub(r"\1", text)
    return QueryError(code, text)


# ---------------------------------------------------------------------------
# SQL scanning

_FORMAT_WORD_RE = re.compile(r"\bFORMAT\b", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9$]*")
_NUMBER_RE = re.compile(r"[0-9][0-9A-Za-z_.]*")
_SPACE = " \t\n\r\f\v"


class Token:
    __slots__ = ("kind", "text", "start", "end", "depth")

    def __init__(self, kind, text, start, end, depth):
        self.kind = kind      # "word", "string", "quoted", "number", "punct"
        self.text = text
        self.start = start
        self.end = end
        self.depth = depth    # bracket depth before the token

    def is_word(self, *words):
        return self.kind == "word" and self.text.upper() in words


def _skip_quoted(text, pos, quote):
    """Return the index just past the quoted literal that opens at pos."""
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n  # unterminated: the engine reports it


def scan_sql(text, pos=0):
    """Yield the tokens of SQL text lazily, skipping spaces and comments.

    Lazy, so that a caller can stop at the end of an INSERT's header without
    looking at the data after it.
    """
    n = len(text)
    depth = 0
    i = pos
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
            continue
        if ch == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if ch == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if ch == "'":
            j = _skip_quoted(text, i, "'")
            yield Token("string", text[i:j], i, j, depth)
            i = j
            continue
        if ch in "`\"":
            j = _skip_quoted(text, i, ch)
            yield Token("quoted", text[i:j], i, j, depth)
            i = j
            continue
        match = _WORD_RE.match(text, i)
        if match:
            yield Token("word", match.group(), i, match.end(), depth)
            i = match.end()
            continue
        match = _NUMBER_RE.match(text, i)
        if match:
            yield Token("number", match.group(), i, match.end(), depth)
            i = match.end()
            continue
        token = Token("punct", ch, i, i + 1, depth)
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        yield token
        i += 1


class InsertHeader:
    """`INSERT INTO <target> [SETTINGS ...] FORMAT <fmt>` and where its data starts."""

    def __init__(self, target, settings, fmt, data_start):
        self.target = target          # "INSERT INTO t (a, b)"
        self.settings = settings      # "k = 1, j = 'x'" or ""
        self.fmt = fmt
        self.data_start = data_start  # index just past the format name

    def from_infile(self, path):
        sql = f"{self.target} FROM INFILE {quote_string(path)} COMPRESSION 'none'"
        if self.settings:
            sql += f" SETTINGS {self.settings}"
        return f"{sql} FORMAT {self.fmt}"


def parse_insert_header(text):
    """Parse an INSERT whose data follows `FORMAT <fmt>`; None for anything else.

    text may be the Latin-1 decoding of a request body: each character is one
    byte, so the positions returned are byte offsets too.
    """
    tokens = scan_sql(text)
    first = next(tokens, None)
    if first is None or not first.is_word("INSERT"):
        return None
    second = next(tokens, None)
    if second is None or not second.is_word("INTO"):
        return None
    target_end = settings_start = None
    for tok in tokens:
        if tok.kind == "punct" and tok.text == ";" and tok.depth == 0:
            return None
        if tok.kind != "word":
            continue
        word = tok.text.upper()
        if settings_start is None and word in ("VALUES", "SELECT", "WITH", "FROM", "INFILE"):
            return None
        if tok.depth != 0:
            continue
        if word == "SETTINGS" and settings_start is None:
            target_end = tok.start
            settings_start = tok.end
        elif word == "FORMAT":
            fmt = next(tokens, None)
            if fmt is None or fmt.kind != "word":
                return None
            if settings_start is None:
                target = text[first.start:tok.start]
                settings = ""
            else:
                target = text[first.start:target_end]
                settings = text[settings_start:tok.start].strip()
            return InsertHeader(target.rstrip(), settings, fmt.text, fmt.end)
    return None


def data_offset(data, pos):
    """Where insert data starts after the format name, as ClickHouse decides:
    after spaces and tabs, and then one line break if there is one."""
    n = len(data)
    while pos < n and data[pos] in b" \t\f":
        pos += 1
    if pos < n and data[pos] == 0x0D:
        pos += 1
    if pos < n and data[pos] == 0x0A:
        pos += 1
    return pos


def output_format_of(sql):
    """The format named by a top-level FORMAT clause of the last statement, if any."""
    if not _FORMAT_WORD_RE.search(sql):
        return None
    found = None
    previous = None
    for tok in scan_sql(sql):
        if tok.kind == "punct" and tok.text == ";" and tok.depth == 0:
            found = None
        elif previous is not None and previous.is_word("FORMAT") and previous.depth == 0:
            if tok.kind == "word":
                found = tok.text
        previous = tok
    return found


def statement_starts(sql, *words):
    """True if some statement of sql starts with one of the given keywords."""
    if not re.search(r"\b(?:" + "|".join(words) + r")\b", sql, re.IGNORECASE):
        return False
    at_start = True
    for tok in scan_sql(sql):
        if at_start and tok.is_word(*words):
            return True
        at_start = tok.kind == "punct" and tok.text == ";" and tok.depth == 0
    return False


def statement_heads(sql):
    """For each statement of sql: its first keyword, upper case, and whether
    it names the readonly setting."""
    heads = []
    first = None
    names_readonly = False
    for tok in scan_sql(sql):
        if tok.kind == "punct" and tok.text == ";" and tok.depth == 0:
            if first is not None:
                heads.append((first, names_readonly))
            first, names_readonly = None, False
        elif first is None and tok.kind == "word":
            first = tok.text.upper()
        elif first == "SET" and tok.is_word("READONLY"):
            names_readonly = True
    if first is not None:
        heads.append((first, names_readonly))
    return heads


_READ_ONLY_KINDS = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "USE"}


def check_readonly(req):
    """Apply the readonly setting in the front.

    In the engine, `SET readonly` cannot be undone (readonly mode forbids
    changing readonly), and every request shares one session; so the front
    checks statement kinds itself and never lets the session become
    read-only."""
    if req.insert is not None:
        heads = [("INSERT", False)]
    elif req.readonly or re.search(r"\breadonly\b", req.sql, re.IGNORECASE):
        heads = statement_heads(req.sql)
    else:
        return
    if req.readonly and req.insert is None and len(heads) > 1:
        raise QueryError.make(SYNTAX_ERROR, "Multi-statements are not allowed")
    for kind, names_readonly in heads:
        if kind == "SET" and names_readonly:
            raise QueryError.make(
                NOT_IMPLEMENTED,
                "SET readonly is not supported by this front: all requests share one engine session, which "
                "could never leave readonly mode again; pass readonly as a URL parameter or in a SETTINGS clause")
        if not req.readonly or kind in _READ_ONLY_KINDS:
            continue
        if kind == "SET" and req.readonly == 2:
            continue
        if kind == "SET":
            raise QueryError.make(READONLY, "Cannot modify settings in readonly mode")
        raise QueryError.make(READONLY, "Cannot execute query in readonly mode")


def quote_string(value):
    """A ClickHouse string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def quote_identifier(name):
    escaped = name.replace("\\", "\\\\").replace("`", "\\`")
    return f"`{escaped}`"


# ---------------------------------------------------------------------------
# Requests

# Parameters ClickHouse's HTTP handler reads itself rather than as settings.
_HANDLER_PARAMS = {
    "query", "database", "default_format", "query_id", "user", "password",
    "quota_key", "compress", "decompress", "buffer_size", "wait_end_of_query",
    "session_id", "session_timeout", "session_check", "close_session",
    "stacktrace", "role", "client_protocol_version",
}

_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMAT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Names the chDB Python wrapper turns into Python objects instead of bytes.
_WRAPPER_FORMATS = {"dataframe", "datastore", "arrowtable", "debug"}
_BINARY_FORMAT_PREFIXES = (
    "rowbinary", "native", "parquet", "arrow", "orc", "avro", "protobuf",
    "capnproto", "msgpack", "bsoneachrow", "npy", "rawblob",
)


def content_type_for(fmt):
    lower = (fmt or "").lower()
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower.startswith(_BINARY_FORMAT_PREFIXES):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def _truthy(value):
    return value.strip().lower() in ("1", "true", "yes", "on")


class Request:
    """One query to run: what the HTTP request asked for, engine-neutral."""

    def __init__(self):
        self.sql = ""             # SQL to run as is (when insert is None)
        self.insert = None        # InsertHeader when data goes through a file
        self.data = b""           # insert data
        self.database = None
        self.default_format = "TabSeparated"
        self.settings = []        # [(name, value)]
        self.params = {}          # query parameters for {name:Type}
        self.query_id = None
        self.gzip_response = False
        self.decompress = False         # the body is in compressed blocks
        self.compress_response = False  # answer in compressed blocks
        self.readonly = 0

    def summary(self):
        if self.insert is not None:
            text = f"{self.insert.target} FORMAT {self.insert.fmt}"
        else:
            text = self.sql
        return " ".join(text.split())[:80]


def decode_body(body, encoding):
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(body)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        if encoding == "zstd":
            # A frame without a content size (streamed) needs the reader.
            with zstandard.ZstdDecompressor().stream_reader(body) as reader:
                return reader.read()
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise QueryError.make(ZLIB_INFLATE_FAILED, f"Cannot decompress the {encoding} request body: {exc}")
    raise QueryError.make(UNKNOWN_COMPRESSION_METHOD,
                          f"Content-Encoding {encoding!r} is not supported by this front (use gzip, deflate or zstd)")


# ClickHouse's compressed-block framing (`decompress=1` / `compress=1`):
# a 16-byte CityHash128 (v1.0.2) of the rest of the block, the method byte,
# the block's size including this 9-byte header and the raw size (both
# UInt32 little-endian), then the payload.
_BLOCK_NONE, _BLOCK_LZ4, _BLOCK_ZSTD = 0x02, 0x82, 0x90
_BLOCK_HEADER = 9


def _checksum(block):
    h = CityHash128(block)
    # ClickHouse writes the hash's two halves as UInt64 little-endian, the
    # half this package returns in the high bits first.
    return (h >> 64).to_bytes(8, "little") + (h & (2**64 - 1)).to_bytes(8, "little")


def decode_blocks(body):
    out = []
    pos = 0
    while pos < len(body):
        if len(body) - pos < 16 + _BLOCK_HEADER:
            raise QueryError.make(CANNOT_DECOMPRESS, "Cannot decompress: the body ends inside a block header")
        method = body[pos + 16]
        size = int.from_bytes(body[pos + 17:pos + 21], "little")
        raw = int.from_bytes(body[pos + 21:pos + 25], "little")
        block = body[pos + 16:pos + 16 + size]
        if size < _BLOCK_HEADER or len(block) != size:
            raise QueryError.make(CANNOT_DECOMPRESS, "Cannot decompress: a block is cut short")
        if _checksum(block) != body[pos:pos + 16]:
            raise QueryError.make(CHECKSUM_DOESNT_MATCH, "Checksum doesn't match: corrupted data")
        payload = block[_BLOCK_HEADER:]
        try:
            if method == _BLOCK_LZ4:
                data = lz4.block.decompress(payload, uncompressed_size=raw)
            elif method == _BLOCK_ZSTD:
                data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw)
            elif method == _BLOCK_NONE:
                data = payload
            else:
                raise QueryError.make(UNKNOWN_COMPRESSION_METHOD, f"Unknown compression method: {method:#x}")
        except (lz4.block.LZ4BlockError, zstandard.ZstdError) as exc:
            raise QueryError.make(CANNOT_DECOMPRESS, f"Cannot decompress a {method:#x} block: {exc}")
        if len(data) != raw:
            raise QueryError.make(CANNOT_DECOMPRESS, "Cannot decompress: a block's raw size does not match")
        out.append(data)
        pos += 16 + size
    return b"".join(out)


def encode_blocks(data):
    """`data` as uncompressed blocks (method none), which every client of
    the framing reads."""
    out = []
    step = 1 << 20
    for start in range(0, len(data), step):
        chunk = data[start:start + step]
        block = bytes([_BLOCK_NONE]) + (len(chunk) + _BLOCK_HEADER).to_bytes(4, "little") \
            + len(chunk).to_bytes(4, "little") + chunk
        out.append(_checksum(block) + block)
    return b"".join(out)


def build_request(params, headers, body, method):
    """Work out the query, its data and its settings from an HTTP request.

    params: list of (name, value) from the URL; body: the raw request body.
    """
    req = Request()
    query = None
    for name, value in params:
        if name == "query":
            query = value
        elif name == "database":
            req.database = value or None
        elif name == "default_format":
            req.default_format = value or req.default_format
        elif name == "query_id":
            req.query_id = value
        elif name == "decompress":
            req.decompress = _truthy(value)
        elif name == "compress":
            req.compress_response = _truthy(value)
        elif name == "readonly":
            if value.strip() not in ("0", "1", "2"):
                raise QueryError.make(BAD_ARGUMENTS, f"readonly must be 0, 1 or 2, not {value!r}")
            req.readonly = int(value.strip())
        elif name.startswith("param_") and len(name) > 6:
            req.params[name[6:]] = value
        elif name in _HANDLER_PARAMS:
            pass
        else:
            if not _SETTING_NAME_RE.match(name):
                raise QueryError.make(BAD_ARGUMENTS, f"Invalid setting name {name!r} in the URL")
            req.settings.append((name, value))
            if name == "enable_http_compression" and _truthy(value):
                accept = headers.get("Accept-Encoding", "") or ""
                req.gzip_response = "gzip" in accept.lower()

    if req.database is None and headers.get("X-ClickHouse-Database"):
        req.database = headers.get("X-ClickHouse-Database")
    if not any(name == "default_format" for name, _ in params) and headers.get("X-ClickHouse-Format"):
        req.default_format = headers.get("X-ClickHouse-Format")
    if not _FORMAT_NAME_RE.match(req.default_format) or req.default_format.lower() in _WRAPPER_FORMATS:
        raise QueryError.make(UNKNOWN_FORMAT, f"Unknown format {req.default_format}")

    if method != "POST":
        body = b""
    body = decode_body(body, headers.get("Content-Encoding"))
    if req.decompress and body:
        body = decode_blocks(body)

    if query is not None and body:
        header = parse_insert_header(query)
        if header is not None and not query[header.data_start:].strip():
            # The query names the format and the body is the data.
            req.insert = header
            req.data = body
            return req
        stream = query.encode("utf-8") + b"\n" + body
    elif query is not None:
        stream = query.encode("utf-8")
    else:
        stream = body

    if not stream.strip():
        raise QueryError.make(SYNTAX_ERROR, "Empty query")

    # An INSERT with its data after the FORMAT clause, in one stream.
    # Latin-1 maps every byte to one character, so offsets are byte offsets.
    header = parse_insert_header(stream.decode("latin-1"))
    if header is not None:
        req.insert = InsertHeader(
            _utf8(header.target.encode("latin-1")),
            _utf8(header.settings.encode("latin-1")),
            header.fmt,
            header.data_start,
        )
        req.data = stream[data_offset(stream, header.data_start):]
        return req

    req.sql = _utf8(stream)
    return req


def _utf8(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryError.make(BAD_ARGUMENTS, f"The query is not valid UTF-8: {exc}")


# ---------------------------------------------------------------------------
# Engine

class Result:
    def __init__(self, body, fmt, summary):
        self.body = body
        self.fmt = fmt
        self.summary = summary


# Lists the session's changed settings even after a request has SET tight
# limits (the limits listed here show up as changed too, and are reset).
_CHANGED_SETTINGS_SQL = (
    "SELECT name, value FROM system.settings WHERE changed SETTINGS max_result_rows = 0, "
    "max_result_bytes = 0, max_rows_to_read = 0, max_bytes_to_read = 0, max_execution_time = 0, "
    "max_memory_usage = 0, max_columns_to_read = 0"
)


class Engine:
    """The chDB session; every call into it holds one lock."""

    def __init__(self, data_dir):
        import chdb.session  # imported here so that --help works without chdb

        self._lock = threading.Lock()
        self._session = chdb.session.Session(data_dir)
        # Insert data waits here for FROM INFILE; beside the engine's own
        # files, so that a front killed mid-insert leaves nothing elsewhere.
        self._tmp_dir = os.path.join(data_dir, ".chdb-front-tmp")
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        os.makedirs(self._tmp_dir)
        # Settings the engine itself starts with changed from their defaults;
        # restoring a setting means going back to these, not to the default.
        rows = self._json_rows("SELECT name, value FROM system.settings WHERE changed")
        self._baseline = {row["name"]: row["value"] for row in rows}
        row = self._json_rows("SELECT timezone() AS tz, version() AS v")[0]
        self.timezone = row["tz"]
        self.version = row["v"]

    def _raw(self, sql, fmt="TabSeparated", params=None):
        if self._session is None:
            raise QueryError.make(STD_EXCEPTION, "The front is shutting down")
        try:
            return self._session.query(sql, fmt, params=params or None)
        except Exception as exc:  # chDB raises its own RuntimeError subclasses
            raise error_from_engine(exc) from None

    def _json_rows(self, sql):
        out = self._raw(sql, "JSONEachRow").bytes()
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def execute(self, req):
        check_readonly(req)
        data_path = None
        if req.insert is not None:
            fd, data_path = tempfile.mkstemp(prefix="insert-", suffix=".data", dir=self._tmp_dir)
            with os.fdopen(fd, "wb") as handle:
                handle.write(req.data)
        try:
            with self._lock:
                return self._execute_locked(req, data_path)
        finally:
            if data_path is not None:
                try:
                    os.unlink(data_path)
                except OSError:
                    pass

    def _execute_locked(self, req, data_path):
        applied = []
        used_database = False
        sql = req.sql
        try:
            if req.database:
                used_database = True
                self._raw(f"USE {quote_identifier(req.database)}")
            for name, value in req.settings:
                self._raw(f"SET {name} = {quote_string(value)}")
                applied.append(name)
            if req.insert is not None:
                sql = req.insert.from_infile(data_path)
                result = self._raw(sql, params=req.params)
                fmt = None
            else:
                if req.readonly == 1:
                    # Per query, so the session itself never becomes read-only.
                    sql = sql.rstrip().rstrip(";") + "\nSETTINGS readonly = 1"
                result = self._raw(sql, req.default_format, params=req.params)
                fmt = output_format_of(sql) or req.default_format
            summary = {
                "read_rows": str(result.rows_read()),
                "read_bytes": str(result.bytes_read()),
                "written_rows": str(result.rows_written()),
                "written_bytes": str(result.bytes_written()),
                "total_rows_to_read": "0",
                "result_rows": "0",
                "result_bytes": str(result.size()),
                "elapsed_ns": str(int(result.elapsed() * 1e9)),
            }
            return Result(result.bytes(), fmt, summary)
        finally:
            self._restore(applied, used_database, req.insert is None and sql)

    def _restore(self, applied, used_database, sql):
        """Undo what a request changed in the session: HTTP queries without a
        session_id are independent of each other in ClickHouse."""
        if self._session is None:
            return
        names = list(applied)
        if sql and statement_starts(sql, "SET"):
            try:
                changed = {row["name"]: row["value"] for row in
                           self._json_rows(_CHANGED_SETTINGS_SQL)}
            except QueryError:
                changed = {}
            names += [n for n, v in changed.items() if self._baseline.get(n) != v]
            names += [n for n in self._baseline if n not in changed]
        for name in dict.fromkeys(names):
            if name in self._baseline:
                statement = f"SET {name} = {quote_string(self._baseline[name])}"
            else:
                statement = f"SET {name} = DEFAULT"
            try:
                self._raw(statement)
            except QueryError as exc:
                log(f"could not restore setting {name}: {exc.text}")
        if used_database or (sql and statement_starts(sql, "USE")):
            try:
                self._raw("USE default")
            except QueryError as exc:
                log(f"could not switch back to database default: {exc.text}")

    def close(self):
        with self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                finally:
                    self._session = None
            shutil.rmtree(self._tmp_dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# HTTP

_log_lock = threading.Lock()
_quiet = False


def log(line):
    with _log_lock:
        try:
            sys.stderr.write(f"chdb-front: {line}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # nobody is reading the log


class BadRequestFraming(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine = None  # set by main()

    def version_string(self):
        return "chdb-front"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # one line per request is written by _handle instead

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def do_OPTIONS(self):
        self._reply(204, b"", [("Allow", "GET, POST, HEAD, OPTIONS")])

    def _read_body(self):
        transfer = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in transfer:
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise BadRequestFraming(f"bad Content-Length {length!r}")
        if size < 0:
            raise BadRequestFraming(f"bad Content-Length {length!r}")
        return self._read_exact(size)

    def _read_exact(self, size):
        parts = []
        remaining = size
        while remaining > 0:
            part = self.rfile.read(remaining)
            if not part:
                raise BadRequestFraming("connection closed inside the request body")
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)

    def _read_chunked(self):
        parts = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise BadRequestFraming("connection closed inside a chunked body")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequestFraming(f"bad chunk size {size_text!r}")
            if size == 0:
                break
            parts.append(self._read_exact(size))
            if self.rfile.readline(65537).strip():
                raise BadRequestFraming("chunk not followed by CRLF")
        while True:  # trailer fields, up to the empty line
            line = self.rfile.readline(65537)
            if not line or not line.strip():
                break
        return b"".join(parts)

    def _reply(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _handle(self):
        started = time.monotonic()
        status = 500
        summary = ""
        try:
            try:
                body = self._read_body()
            except BadRequestFraming as exc:
                self.close_connection = True
                status = 400
                summary = "(unreadable request)"
                text = f"Code: {BAD_ARGUMENTS}. DB::Exception: Cannot read the request body: {exc}. (BAD_ARGUMENTS)\n"
                self._reply(status, text.encode(), [("Content-Type", "text/plain; charset=UTF-8"),
                                                    ("X-ClickHouse-Exception-Code", str(BAD_ARGUMENTS))])
                return
            url = urlsplit(self.path)
            params = parse_qsl(url.query, keep_blank_values=True)
            path = url.path.rstrip("/") or "/"
            if path in ("/ping", "/replicas_status") or (
                    path == "/" and self.command != "POST" and not any(n == "query" for n, _ in params)):
                status = 200
                summary = path
                self._reply(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")])
                return
            if path != "/":
                status = 404
                summary = path
                text = f"There is no handle {url.path}\n"
                self._reply(404, text.encode(), [("Content-Type", "text/plain; charset=UTF-8")])
                return
            status, summary = self._query(params, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if not _quiet:
                took = (time.monotonic() - started) * 1000
                log(f"{self.command} {summary} -> {status} {took:.1f}ms")

    def _query(self, params, body):
        query_id = None
        req = None
        try:
            req = build_request(params, self.headers, body, self.command)
            query_id = req.query_id
            result = self.engine.execute(req)
        except QueryError as exc:
            return self._send_error(exc, query_id, req)
        except Exception as exc:  # never let one request take the server down
            return self._send_error(QueryError.make(STD_EXCEPTION, f"{type(exc).__name__}: {exc}"), query_id, req)
        headers = [
            ("X-ClickHouse-Query-Id", query_id or str(uuid.uuid4())),
            ("X-ClickHouse-Summary", json.dumps(result.summary, separators=(",", ":"))),
            ("X-ClickHouse-Timezone", self.engine.timezone),
            ("X-ClickHouse-Server-Display-Name", "chdb-front"),
            ("Content-Type", content_type_for(result.fmt)),
        ]
        if result.fmt:
            headers.append(("X-ClickHouse-Format", result.fmt))
        body_out = result.body
        if req.compress_response and body_out:
            body_out = encode_blocks(body_out)
        if req.gzip_response and body_out:
            body_out = gzip.compress(body_out, compresslevel=3)
            headers.append(("Content-Encoding", "gzip"))
        self._reply(200, body_out, headers)
        return 200, req.summary()

    def _send_error(self, exc, query_id, req):
        text = exc.text if exc.text.endswith("\n") else exc.text + "\n"
        headers = [
            ("X-ClickHouse-Exception-Code", str(exc.code)),
            ("X-ClickHouse-Query-Id", query_id or str(uuid.uuid4())),
            ("X-ClickHouse-Server-Display-Name", "chdb-front"),
            ("Content-Type", "text/plain; charset=UTF-8"),
        ]
        self._reply(exc.status, text.encode("utf-8", "replace"), headers)
        what = req.summary() if req is not None else ""
        return exc.status, f"{what} (Code: {exc.code})"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main(argv=None):
    global _quiet
    parser = argparse.ArgumentParser(description="ClickHouse HTTP interface in front of chDB, for tests.")
    parser.add_argument("--port", type=int, required=True, help="port to listen on; 0 picks a free one")
    parser.add_argument("--data-dir", required=True, help="directory the chDB session keeps its data in")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    args = parser.parse_args(argv)
    _quiet = args.quiet

    data_dir = os.path.abspath(args.data_dir)
    os.makedirs(data_dir, exist_ok=True)
    engine = Engine(data_dir)
    Handler.engine = engine

    if ":" in args.host:
        import socket
        Server.address_family = socket.AF_INET6
    try:
        server = Server((args.host, args.port), Handler)
    except OSError:
        engine.close()
        raise

    stopping = threading.Event()

    def on_signal(signum, frame):
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever(), which runs in this thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    host, port = server.server_address[:2]
    sys.stdout.write(f"chdb-front listening on {host}:{port}\n")
    sys.stdout.flush()
    log(f"ClickHouse {engine.version} (chDB) on {data_dir}")
    try:
        server.serve_forever(poll_interval=0.25)
    finally:
        server.server_close()
        engine.close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
