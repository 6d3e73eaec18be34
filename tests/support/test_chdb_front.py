"""Tests for chdb_front.py, the ClickHouse HTTP interface in front of chDB.

Run with: python -m pytest tests/support/test_chdb_front.py -q
(needs the chdb-core package; the tests are skipped without it).
"""

import gzip
import http.client
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("chdb")

FRONT = Path(__file__).resolve().parent / "chdb_front.py"
START_TIMEOUT = 90


class Front:
    """A running chdb_front.py subprocess."""

    def __init__(self, data_dir, log_path):
        self.data_dir = data_dir
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(FRONT), "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )
        line = self._read_line(START_TIMEOUT)
        prefix = "chdb-front listening on "
        if not line.startswith(prefix):
            self.kill()
            raise AssertionError(f"unexpected first line {line!r}; log:\n{self.log_text()}")
        host, _, port = line[len(prefix):].strip().rpartition(":")
        self.host = host
        self.port = int(port)

    def _read_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise AssertionError(f"front did not start in {timeout}s; log:\n{self.log_text()}")
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    raise AssertionError(f"front exited with {self.proc.wait()}; log:\n{self.log_text()}")
                buf += chunk
        finally:
            sel.close()
        return buf.decode()

    def log_text(self):
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def connection(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)


class Reply:
    def __init__(self, resp):
        self.status = resp.status
        self.headers = resp.headers
        self.body = resp.read()

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json_rows(self):
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]


def call(front, method="POST", body=None, params=None, headers=None, path="/", conn=None):
    url = path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    own = conn is None
    conn = conn or front.connection()
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, url, body=body, headers=headers or {})
        return Reply(conn.getresponse())
    finally:
        if own:
            conn.close()


def ok(front, sql=None, **kw):
    """Run a query and insist that it succeeds."""
    if sql is not None:
        kw.setdefault("body", sql)
    reply = call(front, **kw)
    assert reply.status == 200, f"{reply.status}: {reply.text}"
    return reply


# --- RowBinary encoding, by hand -------------------------------------------

def leb128(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def rb_string(value):
    raw = value.encode() if isinstance(value, str) else value
    return leb128(len(raw)) + raw


def rb_u64(value):
    return struct.pack("<Q", value)


def rb_dt64_ns(nanos):
    return struct.pack("<q", nanos)


def rb_map(mapping):
    out = leb128(len(mapping))
    for key, value in mapping.items():
        out += rb_string(key) + rb_string(value)
    return out


def rb_array_u64(values):
    return leb128(len(values)) + b"".join(rb_u64(v) for v in values)


ROWS = [
    # name, count, nanoseconds, attributes, sizes
    ("alpha", 1, 1_700_000_000_123_456_789, {"service.name": "api", "env": "ci"}, [1, 2, 3]),
    ("beta with a longer name, over 127 bytes " + "x" * 120, 2**63 + 5,
     1_700_000_001_000_000_001, {}, []),
    ("gamma ü", 0, 0, {"k": "v" * 200}, [2**64 - 1]),
]


def rowbinary(rows):
    return b"".join(
        rb_string(name) + rb_u64(count) + rb_dt64_ns(ns) + rb_map(attrs) + rb_array_u64(sizes)
        for name, count, ns, attrs, sizes in rows
    )


TYPED_TABLE = """
CREATE TABLE {name} (
    Name String,
    Count UInt64,
    Ts DateTime64(9),
    Attributes Map(LowCardinality(String), String),
    Sizes Array(UInt64)
) ENGINE = MergeTree ORDER BY (Name, Ts)
SETTINGS non_replicated_deduplication_window = 100
"""

TYPED_SELECT = ("SELECT Name, Count, toUnixTimestamp64Nano(Ts) AS Ns, Attributes, Sizes "
                "FROM {name} ORDER BY Name FORMAT JSONEachRow")


def check_typed_rows(reply_rows, rows):
    assert len(reply_rows) == len(rows)
    for got, (name, count, ns, attrs, sizes) in zip(reply_rows, sorted(rows)):
        assert got["Name"] == name
        assert int(got["Count"]) == count
        assert int(got["Ns"]) == ns
        assert got["Attributes"] == attrs
        assert [int(v) for v in got["Sizes"]] == sizes


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="module")
def front(tmp_path_factory):
    base = tmp_path_factory.mktemp("front")
    running = Front(base / "data", base / "front.log")
    yield running
    code = running.stop()
    assert code == 0, running.log_text()


def count(front, table, **params):
    return int(ok(front, f"SELECT count() FROM {table}", params=params or None).text.strip())


# --- tests ------------------------------------------------------------------

def test_ping(front):
    for path in ("/ping", "/"):
        reply = call(front, "GET", path=path)
        assert reply.status == 200
        assert reply.body == b"Ok.\n"


def test_select_and_default_format(front):
    reply = ok(front, "SELECT 1 AS a, 'x' AS b")
    assert reply.body == b"1\tx\n"
    assert reply.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert reply.headers["Content-Type"].startswith("text/plain")

    reply = ok(front, "SELECT 1 AS a", params={"default_format": "JSONEachRow"})
    assert reply.body == b'{"a":1}\n'
    assert reply.headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert reply.headers["Content-Type"].startswith("application/json")

    reply = ok(front, method="GET", params={"query": "SELECT 2 AS b FORMAT JSONEachRow"})
    assert reply.json_rows() == [{"b": 2}]
    assert reply.headers["X-ClickHouse-Format"] == "JSONEachRow"

    # query parameter and body together: the body is appended to the query
    reply = ok(front, body=" + 1", params={"query": "SELECT 41"})
    assert reply.body == b"42\n"

    # {name:Type} placeholders from param_<name>
    reply = ok(front, "SELECT {n:UInt32} * 2, {s:String}", params={"param_n": "21", "param_s": "it's"})
    assert reply.body == b"42\tit\\'s\n"


def test_ddl_and_json_insert(front):
    ok(front, "CREATE DATABASE IF NOT EXISTS jdb")
    reply = ok(front, "CREATE TABLE jdb.events (id UInt64, msg String, at DateTime) "
                      "ENGINE = MergeTree ORDER BY id")
    assert reply.body == b""
    data = '{"id":1,"msg":"hello","at":"2024-01-02 03:04:05"}\n{"id":2,"msg":"wörld","at":"2024-01-02 03:04:06"}\n'
    reply = ok(front, body=data, params={"query": "INSERT INTO jdb.events FORMAT JSONEachRow"})
    assert reply.body == b""
    rows = ok(front, "SELECT id, msg, toString(at) AS at FROM jdb.events ORDER BY id FORMAT JSONEachRow").json_rows()
    assert rows == [
        {"id": 1, "msg": "hello", "at": "2024-01-02 03:04:05"},
        {"id": 2, "msg": "wörld", "at": "2024-01-02 03:04:06"},
    ]

    # TabSeparated, with a column list and a lower-case FORMAT
    ok(front, body="3\tthree\n4\tfour\n", params={"query": "insert into jdb.events (id, msg) format TabSeparated"})
    assert count(front, "jdb.events") == 4

    # a SETTINGS clause inside the INSERT itself
    ok(front, body='{"id":5,"msg":"five"}\n',
       params={"query": "INSERT INTO jdb.events (id, msg) SETTINGS async_insert = 0 FORMAT JSONEachRow"})
    assert count(front, "jdb.events") == 5

    # query and data in one body, as ClickHouse splits them
    ok(front, 'INSERT INTO jdb.events (id, msg) FORMAT JSONEachRow\n{"id":6,"msg":"six"}\n')
    assert count(front, "jdb.events") == 6

    # plain VALUES inserts still run as SQL
    ok(front, "INSERT INTO jdb.events (id, msg) VALUES (7, 'seven')")
    assert count(front, "jdb.events") == 7


def test_rowbinary_insert(front):
    ok(front, TYPED_TABLE.format(name="typed_rb"))
    body = rowbinary(ROWS)
    reply = ok(front, body=body, params={
        "query": "INSERT INTO typed_rb (Name, Count, Ts, Attributes, Sizes) FORMAT RowBinary"})
    assert reply.body == b""
    check_typed_rows(ok(front, TYPED_SELECT.format(name="typed_rb")).json_rows(), ROWS)


def test_rowbinary_nested_columns(front):
    ok(front, """CREATE TABLE spans (
        Id String,
        Events Nested(Timestamp DateTime64(9), Name LowCardinality(String))
    ) ENGINE = MergeTree ORDER BY Id""")
    stamps = [1_700_000_000_000_000_001, 1_700_000_000_000_000_002]
    body = (rb_string("s1") + leb128(2) + b"".join(rb_dt64_ns(s) for s in stamps)
            + leb128(2) + rb_string("start") + rb_string("end"))
    ok(front, body=body, params={"query": "INSERT INTO spans (Id, Events.Timestamp, Events.Name) FORMAT RowBinary"})
    rows = ok(front, "SELECT Id, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS ts, "
                     "Events.Name AS names FROM spans FORMAT JSONEachRow").json_rows()
    assert len(rows) == 1
    assert rows[0]["Id"] == "s1"
    assert [int(t) for t in rows[0]["ts"]] == stamps
    assert rows[0]["names"] == ["start", "end"]


def test_zstd_bodies(front):
    import zstandard
    ok(front, TYPED_TABLE.format(name="typed_zstd"))
    ok(front, body=zstandard.ZstdCompressor().compress(rowbinary(ROWS)), headers={"Content-Encoding": "zstd"},
       params={"query": "INSERT INTO typed_zstd FORMAT RowBinary"})
    check_typed_rows(ok(front, TYPED_SELECT.format(name="typed_zstd")).json_rows(), ROWS)
    # A streamed frame (no content size in its header) decodes too.
    # (Into a table of its own: the same rows twice would be deduplicated.)
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(rowbinary(ROWS))
    ok(front, TYPED_TABLE.format(name="typed_zstd_streamed"))
    ok(front, body=streamed, headers={"Content-Encoding": "zstd"},
       params={"query": "INSERT INTO typed_zstd_streamed FORMAT RowBinary"})
    check_typed_rows(ok(front, TYPED_SELECT.format(name="typed_zstd_streamed")).json_rows(), ROWS)
    reply = call(front, body=b"not zstd", headers={"Content-Encoding": "zstd"},
                 params={"query": "INSERT INTO typed_zstd FORMAT RowBinary"})
    assert reply.status >= 400
    assert reply.text.startswith("Code: ")


def test_compressed_blocks(front):
    # ClickHouse's block framing as its clients send it with decompress=1.
    # The checksum layout is checked against a real client by
    # `costplane bench`'s test, where rotel's LZ4 inserts go through here.
    import lz4.block
    import zstandard
    from chdb_front import _checksum, encode_blocks

    def block(method, payload, raw):
        body = bytes([method]) + (len(payload) + 9).to_bytes(4, "little") + len(raw).to_bytes(4, "little") + payload
        return _checksum(body) + body

    data = rowbinary(ROWS)
    half = len(data) // 2
    # Two blocks, LZ4 then zstd: the rows are their concatenation.
    body = (block(0x82, lz4.block.compress(data[:half], store_size=False), data[:half])
            + block(0x90, zstandard.ZstdCompressor().compress(data[half:]), data[half:]))
    ok(front, TYPED_TABLE.format(name="typed_blocks"))
    ok(front, body=body, params={"query": "INSERT INTO typed_blocks FORMAT RowBinary", "decompress": "1"})
    check_typed_rows(ok(front, TYPED_SELECT.format(name="typed_blocks")).json_rows(), ROWS)

    # A flipped byte fails the checksum: nothing is stored.
    bad = bytearray(body)
    bad[40] ^= 0xFF
    reply = call(front, body=bytes(bad), params={"query": "INSERT INTO typed_blocks FORMAT RowBinary", "decompress": "1"})
    assert reply.status >= 400
    assert reply.headers["X-ClickHouse-Exception-Code"] == "40"
    assert count(front, "typed_blocks") == len(ROWS)

    # compress=1: the answer comes back framed (uncompressed blocks).
    reply = call(front, body="SELECT 42", params={"compress": "1"})
    assert reply.status == 200
    assert reply.body == encode_blocks(b"42\n")
    assert reply.body[16] == 0x02 and reply.body[25:] == b"42\n"


def test_gzip_bodies(front):
    ok(front, gzip.compress(b"CREATE TABLE gz (id UInt64, msg String) ENGINE = MergeTree ORDER BY id"),
       headers={"Content-Encoding": "gzip"})
    data = "".join(json.dumps({"id": i, "msg": f"m{i}"}) + "\n" for i in range(1000)).encode()
    ok(front, body=gzip.compress(data), headers={"Content-Encoding": "gzip"},
       params={"query": "INSERT INTO gz FORMAT JSONEachRow"})
    assert count(front, "gz") == 1000

    ok(front, TYPED_TABLE.format(name="typed_gz"))
    ok(front, body=gzip.compress(rowbinary(ROWS)), headers={"Content-Encoding": "gzip"},
       params={"query": "INSERT INTO typed_gz FORMAT RowBinary"})
    check_typed_rows(ok(front, TYPED_SELECT.format(name="typed_gz")).json_rows(), ROWS)

    reply = call(front, body=b"not gzip at all", headers={"Content-Encoding": "gzip"},
                 params={"query": "INSERT INTO gz FORMAT JSONEachRow"})
    assert reply.status >= 400
    assert reply.text.startswith("Code: ")


def test_chunked_bodies(front):
    ok(front, "CREATE TABLE chunked (id UInt64, msg String) ENGINE = MergeTree ORDER BY id")
    lines = [f"{i}\tline {i}\n".encode() for i in range(500)]
    pieces = [b"".join(lines[i:i + 37]) for i in range(0, len(lines), 37)]

    conn = front.connection()
    try:
        url = "/?" + urllib.parse.urlencode({"query": "INSERT INTO chunked FORMAT TabSeparated"})
        conn.request("POST", url, body=iter(pieces), headers={"Transfer-Encoding": "chunked"},
                     encode_chunked=True)
        reply = Reply(conn.getresponse())
        assert reply.status == 200, reply.text
        # same connection, chunked SQL body
        conn.request("POST", "/", body=iter([b"SELECT count(), ", b"sum(id) FROM chunked"]),
                     headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        reply = Reply(conn.getresponse())
        assert reply.status == 200, reply.text
        assert reply.body == f"500\t{sum(range(500))}\n".encode()
    finally:
        conn.close()

    # chunked and gzip together
    ok(front, TYPED_TABLE.format(name="typed_chunked"))
    packed = gzip.compress(rowbinary(ROWS))
    conn = front.connection()
    try:
        url = "/?" + urllib.parse.urlencode({"query": "INSERT INTO typed_chunked FORMAT RowBinary"})
        conn.request("POST", url, body=iter([packed[:10], packed[10:50], packed[50:]]),
                     headers={"Transfer-Encoding": "chunked", "Content-Encoding": "gzip"},
                     encode_chunked=True)
        reply = Reply(conn.getresponse())
        assert reply.status == 200, reply.text
    finally:
        conn.close()
    check_typed_rows(ok(front, TYPED_SELECT.format(name="typed_chunked")).json_rows(), ROWS)


def test_database_parameter(front):
    ok(front, "CREATE DATABASE IF NOT EXISTS otel")
    ok(front, "CREATE TABLE logs (id UInt64) ENGINE = MergeTree ORDER BY id", params={"database": "otel"})
    ok(front, body="1\n2\n3\n", params={"database": "otel", "query": "INSERT INTO logs FORMAT TabSeparated"})
    assert count(front, "logs", database="otel") == 3
    assert count(front, "otel.logs") == 3
    assert ok(front, "SELECT currentDatabase()", params={"database": "otel"}).body == b"otel\n"
    # the next request without the parameter is back in the default database
    assert ok(front, "SELECT currentDatabase()").body == b"default\n"
    reply = call(front, body="SELECT count() FROM logs")
    assert reply.status == 404 and reply.headers["X-ClickHouse-Exception-Code"] == "60"

    reply = call(front, body="SELECT 1", params={"database": "no_such_db"})
    assert reply.status in (404, 500)
    assert reply.headers["X-ClickHouse-Exception-Code"] == "81"
    assert reply.text.startswith("Code: 81.")
    assert ok(front, "SELECT currentDatabase()").body == b"default\n"

    # a USE inside a request does not stick either
    ok(front, "USE otel")
    assert ok(front, "SELECT currentDatabase()").body == b"default\n"


def test_errors(front):
    reply = call(front, body="SELECT throwIf(1, 'boom')")
    assert reply.status == 500
    assert reply.headers["X-ClickHouse-Exception-Code"] == "395"
    assert reply.text.startswith("Code: 395.")
    assert "boom" in reply.text

    reply = call(front, body="SELEC 1")
    assert reply.status == 400
    assert reply.headers["X-ClickHouse-Exception-Code"] == "62"
    assert reply.text.startswith("Code: 62.")

    reply = call(front, body="SELECT * FROM no_such_table")
    assert reply.status in (404, 500)
    assert reply.headers["X-ClickHouse-Exception-Code"] == "60"
    assert reply.text.startswith("Code: 60.")

    reply = call(front, body=b"\x01\x02", params={"query": "INSERT INTO no_such_table FORMAT RowBinary"})
    assert reply.status >= 400
    assert reply.text.startswith("Code: ")

    # truncated RowBinary
    ok(front, TYPED_TABLE.format(name="typed_err"))
    reply = call(front, body=rowbinary(ROWS)[:-3], params={"query": "INSERT INTO typed_err FORMAT RowBinary"})
    assert reply.status >= 400
    assert reply.headers["X-ClickHouse-Exception-Code"].isdigit()
    assert reply.text.startswith("Code: ")

    # decompress=1 with a body that is no compressed block.
    reply = call(front, body=b"data", params={"query": "INSERT INTO typed_err FORMAT RowBinary", "decompress": "1"})
    assert reply.status >= 400
    assert reply.text.startswith("Code: ")
    assert reply.headers["X-ClickHouse-Exception-Code"] == "271"

    reply = call(front, body="SELECT 1", params={"no_such_setting_x": "1"})
    assert reply.status >= 400
    assert reply.headers["X-ClickHouse-Exception-Code"] == "115"

    reply = call(front, body="")
    assert reply.status >= 400 and reply.text.startswith("Code: 62.")

    # still serving
    assert call(front, "GET", path="/ping").body == b"Ok.\n"
    assert ok(front, "SELECT 1").body == b"1\n"


def test_settings_and_dedup_token(front):
    ok(front, TYPED_TABLE.format(name="typed_dedup"))
    body = rowbinary(ROWS)
    params = {
        "query": "INSERT INTO typed_dedup FORMAT RowBinary",
        "insert_deduplication_token": "batch-1",
        "async_insert": "0",
        "wait_end_of_query": "1",
        "max_execution_time": "30",
        "query_id": "q-1",
        "user": "default",
        "password": "",
    }
    ok(front, body=body, params=params)
    ok(front, body=body, params=params)
    assert count(front, "typed_dedup") == len(ROWS)

    # a new token is a new block
    ok(front, body=body, params=dict(params, insert_deduplication_token="batch-2"))
    assert count(front, "typed_dedup") == 2 * len(ROWS)

    # a token with quotes and backslashes is passed through as a string
    odd = "it's a \\ token"
    ok(front, body=body, params=dict(params, insert_deduplication_token=odd))
    ok(front, body=body, params=dict(params, insert_deduplication_token=odd))
    assert count(front, "typed_dedup") == 3 * len(ROWS)

    # settings last one query only
    reply = ok(front, "SELECT getSetting('insert_deduplication_token'), getSetting('max_execution_time')",
               params={"insert_deduplication_token": "zzz", "max_execution_time": "17"})
    assert reply.body == b"zzz\t17\n"
    reply = ok(front, "SELECT getSetting('insert_deduplication_token'), getSetting('max_execution_time')")
    assert reply.body == b"\t0\n"
    # and so do SET statements sent as queries
    ok(front, "SET max_execution_time = 11")
    assert ok(front, "SELECT getSetting('max_execution_time')").body == b"0\n"

    # a setting that changes how data is parsed
    ok(front, "CREATE TABLE stamps (at DateTime('UTC')) ENGINE = MergeTree ORDER BY at")
    ok(front, body='{"at":"2024-05-06T07:08:09Z"}\n', params={
        "query": "INSERT INTO stamps FORMAT JSONEachRow", "date_time_input_format": "best_effort"})
    assert ok(front, "SELECT toString(at) FROM stamps").body == b"2024-05-06 07:08:09\n"


def test_keep_alive_and_concurrency(front):
    conn = front.connection()
    try:
        for i in range(5):
            reply = call(front, body=f"SELECT {i}", conn=conn)
            assert reply.body == f"{i}\n".encode()
        reply = call(front, body="SELEC 1", conn=conn)
        assert reply.status == 400
        reply = call(front, "GET", path="/ping", conn=conn)
        assert reply.body == b"Ok.\n"
    finally:
        conn.close()

    results = {}

    def worker(n):
        results[n] = call(front, body=f"SELECT sum(number) FROM numbers({n * 1000})").body

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in range(1, 9):
        assert results[n] == f"{sum(range(n * 1000))}\n".encode()


def test_response_gzip(front):
    reply = ok(front, "SELECT number FROM numbers(100)",
               params={"enable_http_compression": "1"}, headers={"Accept-Encoding": "gzip"})
    assert reply.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(reply.body) == "".join(f"{i}\n" for i in range(100)).encode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_restart_keeps_data(tmp_path, sig):
    data_dir = tmp_path / "data"
    first = Front(data_dir, tmp_path / "first.log")
    try:
        ok(first, "CREATE DATABASE store")
        ok(first, TYPED_TABLE.format(name="store.typed"))
        ok(first, body=rowbinary(ROWS), params={"query": "INSERT INTO store.typed FORMAT RowBinary"})
        ok(first, body='{"Name":"json","Count":9,"Ts":"2024-01-01 00:00:00","Attributes":{"a":"b"},"Sizes":[9]}\n',
           params={"query": "INSERT INTO typed FORMAT JSONEachRow", "database": "store"})
    finally:
        code = first.stop(sig)
    if sig == signal.SIGTERM:
        assert code == 0, first.log_text()

    second = Front(data_dir, tmp_path / "second.log")
    try:
        assert second.port > 0
        rows = ok(second, TYPED_SELECT.format(name="store.typed")).json_rows()
        check_typed_rows([r for r in rows if r["Name"] != "json"], ROWS)
        assert [r["Name"] for r in rows if r["Name"] == "json"] == ["json"]
        # and it keeps taking writes
        ok(second, body=rowbinary(ROWS[:1]), params={"query": "INSERT INTO store.typed FORMAT RowBinary",
                                                     "insert_deduplication_token": "after-restart"})
        assert count(second, "store.typed") == len(ROWS) + 2
    finally:
        assert second.stop() == 0, second.log_text()


def test_insert_header_parsing():
    import importlib.util

    spec = importlib.util.spec_from_file_location("chdb_front", FRONT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse = module.parse_insert_header

    header = parse("INSERT INTO db.t (a, `b c`, Events.Timestamp) FORMAT RowBinary")
    assert header.target == "INSERT INTO db.t (a, `b c`, Events.Timestamp)"
    assert header.settings == ""
    assert header.fmt == "RowBinary"
    assert header.from_infile("/tmp/x'y.data") == (
        "INSERT INTO db.t (a, `b c`, Events.Timestamp) FROM INFILE '/tmp/x\\'y.data' "
        "COMPRESSION 'none' FORMAT RowBinary")

    header = parse("insert into t settings async_insert=1, insert_deduplication_token='FORMAT x' format JSONEachRow\n{}")
    assert header.target == "insert into t"
    assert header.settings == "async_insert=1, insert_deduplication_token='FORMAT x'"
    assert header.fmt == "JSONEachRow"

    assert parse("INSERT INTO t VALUES (1)") is None
    assert parse("INSERT INTO t SELECT 1 FORMAT TSV") is None
    assert parse("INSERT INTO t FROM INFILE 'x' FORMAT TSV") is None
    assert parse("SELECT 1 FORMAT TSV") is None
    assert parse("INSERT INTO t FORMAT") is None

    text = "INSERT INTO t FORMAT TSV  \r\n\n1\n"
    header = parse(text)
    assert text[module.data_offset(text.encode(), header.data_start):] == "\n1\n"
    assert module.output_format_of("SELECT 'FORMAT JSON' FORMAT CSV SETTINGS max_threads = 1") == "CSV"
    assert module.output_format_of("SELECT 1") is None


def test_more_errors_and_insert_settings(front):
    reply = call(front, body="SELECT 'unterminated")
    assert reply.status >= 400 and reply.text.startswith("Code: ")

    ok(front, "CREATE TABLE dedup_settings (id UInt64) ENGINE = MergeTree ORDER BY id "
              "SETTINGS non_replicated_deduplication_window = 100")
    params = {"query": "INSERT INTO dedup_settings SETTINGS async_insert = 0 FORMAT TabSeparated",
              "insert_deduplication_token": "t-1"}
    ok(front, body="1\n2\n", params=params)
    ok(front, body="1\n2\n", params=params)
    assert count(front, "dedup_settings") == 2


def test_readonly(front):
    ok(front, "CREATE TABLE ro (id UInt64) ENGINE = MergeTree ORDER BY id")
    for level in ("1", "2"):
        reply = ok(front, "SELECT count() FROM ro", params={"readonly": level, "default_format": "JSONCompact",
                                                              "output_format_json_quote_64bit_integers": "0"})
        assert json.loads(reply.body)["data"] == [[0]]
        for sql in ("INSERT INTO ro VALUES (1)", "DROP TABLE ro", "CREATE TABLE ro2 (id UInt64) ENGINE = Memory"):
            reply = call(front, body=sql, params={"readonly": level})
            assert reply.status >= 400 and reply.headers["X-ClickHouse-Exception-Code"] == "164", reply.text
        reply = call(front, body=b"1\n", params={"readonly": level, "query": "INSERT INTO ro FORMAT TSV"})
        assert reply.headers["X-ClickHouse-Exception-Code"] == "164"
    # writes work again without it
    ok(front, body=b"1\n", params={"query": "INSERT INTO ro FORMAT TSV"})
    assert count(front, "ro") == 1
    # a query-level SETTINGS readonly is the engine's, and lasts one query
    assert ok(front, "SELECT getSetting('readonly') SETTINGS readonly = 1").body == b"1\n"
    reply = call(front, body="SET readonly = 1")
    assert reply.status >= 400 and reply.text.startswith("Code: ")
    ok(front, "INSERT INTO ro VALUES (2)")
    assert count(front, "ro") == 2

    # limits SET by one request do not outlive it
    ok(front, "SET max_result_rows = 1, result_overflow_mode = 'throw'")
    assert ok(front, "SELECT number FROM numbers(3)").body == b"0\n1\n2\n"
