"""The incremental JSONL reader against every reading fault the issue names."""

from __future__ import annotations

import os

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bgmon.sources.tail import TailReader


def line(i: int, **extra) -> bytes:
    return orjson.dumps({"type": "message", "text": f"line {i}", **extra}) + b"\n"


def lines(n: int) -> bytes:
    """Lines 0 … n-1."""
    return b"".join(line(i) for i in range(n))


def write(path, data: bytes, mode: str = "ab") -> None:
    with open(path, mode) as fh:
        fh.write(data)


def texts(objs) -> list[str]:
    return [o["text"] for o in objs]


def test_appends_are_read_once(tmp_path):
    path = tmp_path / "a.jsonl"
    write(path, line(1) + line(2))
    reader = TailReader(str(path))
    assert texts(reader.read()) == ["line 1", "line 2"]
    assert reader.read() == []
    write(path, line(3))
    assert texts(reader.read()) == ["line 3"]
    assert reader.read() == []


def test_partial_last_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "a.jsonl"
    whole = line(1)
    write(path, whole[:10])
    reader = TailReader(str(path))
    assert reader.read() == []
    write(path, whole[10:-1])
    assert reader.read() == []
    write(path, b"\n")
    assert texts(reader.read()) == ["line 1"]


def test_truncation_is_read_from_the_start(tmp_path):
    path = tmp_path / "a.jsonl"
    write(path, line(1) + line(2) + line(3))
    reader = TailReader(str(path))
    reader.read()
    write(path, line(9), mode="wb")  # same inode, smaller than the offset
    assert texts(reader.read()) == ["line 9"]
    assert reader.stats.resets == 1


def test_rotation_to_a_new_inode_is_read_from_the_start(tmp_path):
    path = tmp_path / "a.jsonl"
    write(path, line(1) + line(2))
    reader = TailReader(str(path))
    reader.read()
    os.rename(path, tmp_path / "a.jsonl.1")
    write(path, line(3) + line(4) + line(5) + line(6))  # bigger than before: only the inode says
    assert texts(reader.read()) == ["line 3", "line 4", "line 5", "line 6"]
    assert reader.stats.resets == 1


def test_deleted_log_is_noted_and_reading_resumes_when_it_returns(tmp_path):
    path = tmp_path / "a.jsonl"
    write(path, line(1))
    reader = TailReader(str(path))
    reader.read()
    path.unlink()
    assert reader.read() == []
    assert reader.stats.missing
    write(path, line(2))
    assert texts(reader.read()) == ["line 2"]
    assert not reader.stats.missing


def test_over_long_lines_are_skipped_and_counted_without_losing_neighbours(tmp_path):
    path = tmp_path / "a.jsonl"
    big = orjson.dumps({"type": "message", "text": "x" * 5000}) + b"\n"
    write(path, line(1) + big + line(2))
    reader = TailReader(str(path), line_cap=1000)
    assert texts(reader.read()) == ["line 1", "line 2"]
    assert reader.stats.too_long == 1


def test_over_long_line_arriving_in_pieces_is_dropped_as_it_streams(tmp_path):
    path = tmp_path / "a.jsonl"
    reader = TailReader(str(path), line_cap=1000)
    write(path, line(1) + b'{"text": "' + b"y" * 1500)
    assert texts(reader.read()) == ["line 1"]
    assert reader.stats.too_long == 1
    write(path, b"y" * 3000)
    assert reader.read() == []
    write(path, b'"}\n' + line(2))
    assert texts(reader.read()) == ["line 2"]
    assert reader.stats.too_long == 1
    assert len(reader._partial) == 0


def test_invalid_utf8_and_invalid_json_are_counted_not_fatal(tmp_path):
    path = tmp_path / "a.jsonl"
    write(path, line(1) + b'{"type": "message", "text": "caf\xe9"}\n' + b"{not json\n" + b"[1,2]\n" + line(2))
    reader = TailReader(str(path))
    got = texts(reader.read())
    assert got[0] == "line 1" and got[-1] == "line 2"
    assert got[1] == "caf\ufffd"  # repaired, not lost
    assert reader.stats.bad_utf8 == 1
    assert reader.stats.bad_json == 1
    assert reader.stats.not_object == 1
    assert reader.stats.problems()


def test_unreadable_file_is_a_counted_problem(tmp_path):
    if os.geteuid() == 0:
        # root reads anything; a directory in the file's place gives an OS error instead.
        path = tmp_path / "a.jsonl"
        path.mkdir()
    else:
        path = tmp_path / "a.jsonl"
        write(path, line(1))
        path.chmod(0)
    reader = TailReader(str(path))
    assert reader.read() == []
    assert reader.stats.error


def test_prime_reads_only_the_tail_of_a_big_log(tmp_path):
    path = tmp_path / "big.jsonl"
    write(path, lines(20000), "wb")
    reader = TailReader(str(path))
    got = reader.prime(max_bytes=64 << 10, max_lines=50)
    assert texts(got) == [f"line {i}" for i in range(19950, 20000)]
    assert reader.offset == os.path.getsize(path)
    write(path, line(20000))
    assert texts(reader.read()) == ["line 20000"]


def test_prime_stops_at_the_byte_budget_and_skips_the_cut_line(tmp_path):
    path = tmp_path / "big.jsonl"
    write(path, lines(5000), "wb")
    reader = TailReader(str(path))
    got = reader.prime(max_bytes=1000, max_lines=10_000)
    assert 0 < len(got) < 60
    assert texts(got)[-1] == "line 4999"
    # the first line is whole: no partial JSON was decoded
    assert reader.stats.bad_json == 0


def test_prime_leaves_a_partial_last_line_pending(tmp_path):
    path = tmp_path / "a.jsonl"
    whole = line(2)
    write(path, line(1) + whole[:7])
    reader = TailReader(str(path))
    assert texts(reader.prime(1 << 20, 100)) == ["line 1"]
    write(path, whole[7:])
    assert texts(reader.read()) == ["line 2"]


def test_prime_of_a_small_file_without_newline_reads_it_when_complete(tmp_path):
    path = tmp_path / "a.jsonl"
    whole = line(1)
    write(path, whole[:-1])
    reader = TailReader(str(path))
    assert reader.prime(1 << 20, 100) == []
    write(path, b"\n")
    assert texts(reader.read()) == ["line 1"]


LINES = st.lists(
    st.one_of(
        st.text(max_size=40).map(lambda t: orjson.dumps({"type": "message", "text": t}) + b"\n"),
        st.just(b"{broken\n"),
        st.just(b"\n"),
        st.just(b'{"type": "message", "text": "\xff\xfe"}\n'),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(lines=LINES, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_any_chunking_of_appends_yields_the_same_objects_as_one_read(tmp_path_factory, lines, cuts):
    data = b"".join(lines)
    base = tmp_path_factory.mktemp("chunks")
    whole_path, piece_path = base / "whole.jsonl", base / "pieces.jsonl"
    write(whole_path, data)
    expected = TailReader(str(whole_path)).read()

    reader = TailReader(str(piece_path))
    write(piece_path, b"")
    got = []
    points = sorted({min(c, len(data)) for c in cuts} | {len(data)})
    start = 0
    for point in points:
        write(piece_path, data[start:point])
        start = point
        got += reader.read()
    assert got == expected


def test_copytruncate_then_a_fast_refill_is_read_from_the_start(tmp_path):
    # logrotate's copytruncate keeps the inode; a writer that refills the file past the old
    # offset before the next look used to be read from that offset: the new lines were lost.
    path = tmp_path / "a.jsonl"
    write(path, b"".join(line(i, ts="2026-12-03T07:00:00Z") for i in range(3)))
    reader = TailReader(str(path))
    assert texts(reader.read()) == ["line 0", "line 1", "line 2"]
    ino = os.stat(path).st_ino
    write(path, b"".join(line(i, ts="2026-12-03T08:00:00Z") for i in range(10, 20)), "r+b")
    os.truncate(path, len(b"".join(line(i, ts="2026-12-03T08:00:00Z") for i in range(10, 20))))
    assert os.stat(path).st_ino == ino
    assert texts(reader.read()) == [f"line {i}" for i in range(10, 20)]
    assert reader.stats.resets == 1


def test_a_rewrite_to_the_same_size_is_seen(tmp_path):
    path = tmp_path / "a.jsonl"
    write(path, line(1) + line(2))
    reader = TailReader(str(path))
    assert texts(reader.read()) == ["line 1", "line 2"]
    size = os.stat(path).st_size
    write(path, line(3) + line(4), "r+b")  # same length, other content, same inode
    assert os.stat(path).st_size == size
    later = os.stat(path).st_mtime + 5
    os.utime(path, (later, later))
    assert texts(reader.read()) == ["line 3", "line 4"]


def test_a_format_decoder_reads_its_lines_and_the_rest_are_decoded_in_full(tmp_path):
    """With a format's decoder (Claude's schema: the fields its adapter reads), lines of a shape
    the schema refuses are still read, decoded in full; bad lines are counted as without it."""
    from bgmon.formats import claude

    ok = {"type": "assistant", "timestamp": "2026-02-12T16:02:25.227Z", "uuid": "u",
          "message": {"content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 3}}}
    odd = {"type": "assistant", "message": "not an object"}  # the schema says object or null
    path = tmp_path / "s.jsonl"
    write(path, orjson.dumps(ok) + b"\n" + orjson.dumps(odd) + b"\n" + b"{not json\n" + b"[1,2]\n"
          + b"null\n" + b'{"type": "user", "message": {"content": "caf\xe9"}}\n' + b"\n")
    reader = TailReader(str(path), decode=claude.decode)
    got = reader.read()
    assert isinstance(got[0], claude.Line) and got[0].message.content[0].text == "hi"
    assert got[1] == odd  # refused by the schema: decoded in full, not lost
    assert claude.parse(got[1]) == claude.parse(odd)
    assert claude.parse(got[2])[0].text == "caf\ufffd"  # invalid UTF-8 in a read field: repaired
    assert len(got) == 3
    stats = reader.stats
    assert (stats.lines, stats.bad_json, stats.not_object, stats.bad_utf8) == (6, 1, 2, 1)
