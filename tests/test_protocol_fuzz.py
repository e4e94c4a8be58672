"""Fuzzing the frame reader, the parsers and the handshake: only typed errors, bounded buffers,
exact decoding of valid frames. A short derandomized run of the properties that
`tempest-jax bench fuzz` checks over a million inputs (tempest_jax/bench/fuzz_bench.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tempest_jax import protocol as P
from tempest_jax.bench import fuzz_bench as fz
from tempest_jax.bench import fuzz_inputs as inputs
from tempest_jax.cli import main

POOL = inputs.FramePool.random(n=64, seed=1)
CI = settings(max_examples=1000, deadline=None, derandomize=True)


def hypothesis_source(data) -> inputs.Source:
    return inputs.Source(lambda lo, hi: data.draw(st.integers(lo, hi)),
                     lambda n: data.draw(st.binary(min_size=n, max_size=n)))


def check(case: inputs.StreamCase) -> fz.Tally:
    """All properties on one input; a violation fails the test with the reproducer."""
    tally = fz.Tally()
    bulk = fz.BulkCheck(tally)
    fz.fuzz_case(case, tally, bulk)
    bulk.flush()
    assert tally.failures == 0, tally.failure_records
    return tally


@CI
@given(st.data())
def test_structured_mutations_raise_only_typed_errors(data):
    check(inputs.generate_case(hypothesis_source(data), POOL))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.binary(max_size=3 * P.FRAME_WIRE_SIZE), st.lists(st.integers(1, 4000), max_size=8),
       st.binary(max_size=300))
def test_random_bytes_raise_only_typed_errors(stream, cuts, handshake):
    cuts = tuple(sorted({c for c in cuts if c < len(stream)}))
    check(inputs.StreamCase(stream, cuts, frame_slice=(0, len(stream)), handshake=handshake))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, len(POOL.wire) - 1), st.binary(max_size=40)),
                min_size=1, max_size=6),
       st.lists(st.integers(1, 6 * P.FRAME_WIRE_SIZE), max_size=10))
def test_valid_frames_between_bad_values_decode_exactly(items, cuts):
    """Valid frames interleaved with frames whose values are bad (framing intact): every valid
    one decodes to exactly the frame encoded, every bad one raises its typed error."""
    parts, intact, offset = [], {}, 0
    for index, garbage in items:
        bad = bytearray(POOL.wire[index])
        state_at = P.LENGTH_PREFIX_SIZE + P.HEADER_SIZE
        bad[state_at: state_at + len(garbage)] = garbage
        bad[-4:] = bytes.fromhex("7fc00000")  # NaN: always a StateValueError
        intact[offset] = POOL.frames[index]
        parts += [POOL.wire[index], bytes(bad)]
        offset += 2 * P.FRAME_WIRE_SIZE
    stream = b"".join(parts)
    cuts = tuple(sorted({c for c in cuts if c < len(stream)}))
    tally = check(inputs.StreamCase(stream, cuts, intact))
    assert tally.intact_frames_checked == len(items)
    assert tally.frames_decoded == len(items)
    assert tally.errors["parse_payload: StateValueError"] == len(items)
    assert tally.stream_endings == {"clean": 1}


def test_reference_framing_matches_the_reader_on_known_streams():
    frame = POOL.wire[0]
    assert fz.reference_framing(frame + frame) == ([(2, 821), (823, 1642)], None, False)
    assert fz.reference_framing(frame + b"\x00\x05") == ([(2, 821)], 821, False)
    assert fz.reference_framing(frame[:-1]) == ([], None, True)


def test_handshakes_round_trip():
    for token in (b"", b"x", bytes(range(256))):
        sent = P.client_handshake(token.decode("utf-8", "surrogateescape"))
        value = P.TOKEN_HANDSHAKE if token else P.PLAIN_HANDSHAKE
        check(inputs.StreamCase(POOL.wire[0], (1, 5), handshake=sent,
                            handshake_sent=(value, token)))


# --- the harness catches what it is meant to catch ----------------------------------------------

def test_an_untyped_exception_is_reported_with_its_input(monkeypatch):
    def broken(payload):
        raise IndexError("boom")

    monkeypatch.setattr(P, "parse_payload", broken)
    tally = fz.Tally()
    fz.fuzz_case(inputs.StreamCase(POOL.wire[0]), tally, fz.BulkCheck(tally))
    assert tally.failure_kinds == {"unexpected exception": 1}
    assert tally.failure_records[0]["stream_hex"] == POOL.wire[0].hex()


def test_unbounded_buffering_is_reported(monkeypatch):
    monkeypatch.setattr(P.FrameSplitter, "pending", property(lambda self: P.FRAME_WIRE_SIZE))
    tally = fz.Tally()
    fz.fuzz_case(inputs.StreamCase(POOL.wire[0][:10]), tally, fz.BulkCheck(tally))
    assert tally.failure_kinds == {"unbounded buffer": 1}


def test_a_lost_frame_is_reported(monkeypatch):
    feed = P.FrameSplitter.feed
    monkeypatch.setattr(P.FrameSplitter, "feed", lambda self, data: feed(self, data)[1:])
    tally = fz.Tally()
    fz.fuzz_case(inputs.StreamCase(POOL.wire[0] * 2), tally, fz.BulkCheck(tally))
    assert tally.failure_kinds == {"framing differs from the reference": 1}


def test_bench_fuzz_json(capsys):
    assert main(["bench", "fuzz", "--inputs", "3000", "--seed", "7", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    figures = report["figures"]
    assert figures["passed"] and figures["inputs"] == 3000 and figures["failures"] == 0
    assert figures["unexpected_exceptions"] == 0
    assert 0 < figures["max_buffered_bytes"] <= figures["buffer_bound_bytes"] == 820
    assert figures["frames_decoded"] > 0 and figures["intact_frames_checked"] > 0
    assert {"FrameSplitter: FrameLengthError", "parse_payload: StateValueError"} <= set(
        figures["typed_errors"])
    assert figures["peak_rss_mb"] > 0 and report["settings"]["seed"] == 7


def test_bench_fuzz_exits_nonzero_on_a_failure(monkeypatch, capsys):
    monkeypatch.setattr(P, "parse_handshake", lambda data: 1 // 0)
    assert main(["bench", "fuzz", "--inputs", "50"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "ZeroDivisionError" in out and "stream_hex" in out


@pytest.mark.parametrize("seed", [0, 1])
def test_generation_is_deterministic(seed):
    def cases():
        src = inputs.Source.seeded(seed)
        return [inputs.generate_case(src, POOL).reproducer() for _ in range(50)]

    assert cases() == cases()


@pytest.mark.timeout(900)
def test_bench_fuzz_server_short(capsys):
    """A few seconds of `bench fuzz --server`: healthy lockstep clients are served exactly while
    hostile ones attack; the report's figures agree with each other."""
    code = main(["bench", "fuzz", "--server", "--seconds", "4", "--replay-capacity", "100000",
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    figures = report["figures"]
    assert code == 0 and figures["passed"], figures["errors"]
    assert figures["replies_missing"] == figures["transitions_lost"] == 0
    assert figures["thread_deaths"] == 0
    assert figures["healthy_frames_served"] > 0 and figures["transitions_expected"] > 0
    assert figures["hostile_mutated_frames_sent"] > 0 and figures["hostile_connections"] > 0
    assert figures["frames_served"] >= figures["healthy_frames_served"]
    assert sum(figures["drops_by_reason"].values()) > 0
    assert {t["state"] for t in figures["threads"].values()} == {"ended"}
