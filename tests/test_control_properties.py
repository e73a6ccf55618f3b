"""Property tier: random request streams, attacks included, through `ControlResponder` and the
reference model: replies (parsed by scapy), bus writes, register contents and counters must be
the model's exactly."""

from hypothesis import given, settings
from hypothesis import strategies as st
from test_control_unit import ADDRESS_WIDTH, BOARD, WORDS, responder

from tickwire.host.udp_control import HEADER, MAGIC, OPERATION, READ, VERSION, WRITE, Operation
from tickwire.sim.control_run import Frame, check_reply, model_replies, request_frame, run_control

addresses = st.one_of(st.integers(0, 7), st.integers(0, (1 << ADDRESS_WIDTH) - 1),
                      st.integers(1 << ADDRESS_WIDTH, (1 << 24) - 1))
operations = st.lists(st.builds(Operation, st.sampled_from([READ, WRITE]), addresses,
                                st.integers(0, (1 << 32) - 1)),
                      min_size=1, max_size=64).filter(lambda ops: len(ops) < 12 or
                                                      len(ops) in (63, 64))
KINDS = ["new", "new", "new", "retransmit", "stale", "wrong_token", "wrong_source",
         "other_ip", "other_port", "bad_fcs", "garbage", "truncated", "count", "unknown_op",
         "magic", "tagged", "options", "oversized"]


def _raw(request_id, ops, token, count=None, magic=MAGIC, op_codes=None):
    body = b"".join(OPERATION.pack(op_codes[i] if op_codes else o.op,
                                   o.address.to_bytes(3, "big"), o.data)
                    for i, o in enumerate(ops))
    return HEADER.pack(magic, VERSION, len(ops) if count is None else count, request_id,
                       token) + body


@st.composite
def streams(draw):
    """(frames, ready): groups of one or two back-to-back frames, each group waited out."""
    frames, last_id, previous, replies = [], 0, None, 0
    model_state = []
    for _ in range(draw(st.integers(1, 10))):
        group = []
        for _ in range(draw(st.sampled_from([1, 1, 2]))):
            kind = draw(st.sampled_from(KINDS))
            ops = draw(operations)
            step = draw(st.integers(1, 1 << 40))
            token, bad, frame_args = BOARD.token, False, {}
            request_id = last_id + step
            payload = None
            if kind == "retransmit" and previous is not None:
                group.append(previous)
                continue
            if kind == "stale":
                request_id = draw(st.integers(0, max(last_id, 0)))
            elif kind == "wrong_token":
                token = draw(st.one_of(
                    st.binary(min_size=16, max_size=16),
                    st.integers(0, 127).map(lambda bit: bytes(
                        a ^ b for a, b in zip(BOARD.token, (1 << bit).to_bytes(16, "big"),
                                              strict=True)))).filter(lambda t: t != BOARD.token))
            elif kind == "wrong_source":
                frame_args["src_ip"] = draw(st.integers(0, (1 << 32) - 1).filter(
                    lambda a: a != BOARD.host_ip))
            elif kind == "other_ip":
                frame_args["dst_ip"] = BOARD.ip ^ draw(st.integers(1, (1 << 32) - 1))
            elif kind == "other_port":
                frame_args["dst_port"] = BOARD.port ^ draw(st.integers(1, 0xFFFF))
            elif kind == "bad_fcs":
                bad = True
            elif kind == "garbage":
                payload = draw(st.binary(max_size=120))
            elif kind == "truncated":
                payload = _raw(request_id, ops, token)
                payload = payload[:draw(st.integers(0, len(payload) - 1))]
            elif kind == "count":
                n = len(ops)
                payload = _raw(request_id, ops, token,
                               count=draw(st.integers(0, 255).filter(lambda c, n=n: c != n)))
            elif kind == "unknown_op":
                codes = [o.op for o in ops]
                codes[draw(st.integers(0, len(ops) - 1))] = draw(
                    st.integers(0, 255).filter(lambda c: c not in (READ, WRITE)))
                payload = _raw(request_id, ops, token, op_codes=codes)
            elif kind == "magic":
                payload = _raw(request_id, ops, token, magic=draw(
                    st.integers(0, 0xFFFF).filter(lambda v: v != MAGIC)))
            elif kind == "tagged":
                frame_args["vlan"] = draw(st.integers(0, 0xFFFF))
            elif kind == "options":
                frame_args["options"] = draw(st.integers(1, 10))
            elif kind == "oversized":
                payload = _raw(request_id, ops + ops[:1] * (65 - len(ops)), token)
            if payload is None:
                payload = _raw(request_id, ops, token)
            frame = request_frame(payload, BOARD, src_port=draw(st.integers(1, 0xFFFF)),
                                  **frame_args)
            item = Frame(frame, bad=bad)
            if kind in ("new", "tagged", "options"):
                last_id, previous = request_id, item
            group.append(item)
        model_state += group
        expected, _, _ = model_replies(model_state, BOARD, WORDS, ADDRESS_WIDTH)
        replies = len(expected)
        group[-1] = group[-1]._replace(idle_after=20, wait_replies=replies)
        frames += group
    return frames, draw(st.sampled_from([1.0, 0.7, 0.3]))


@settings(max_examples=30)
@given(streams(), st.integers(0, 1 << 30))
def test_random_request_streams_match_the_model_exactly(stream, seed):
    frames, ready = stream
    expected, bus, counters = model_replies(frames, BOARD, WORDS, ADDRESS_WIDTH)
    run = run_control(responder(), frames, WORDS, ready=ready, seed=seed)
    assert len(run.replies) == len(expected), (run.counters, counters)
    for frame, reply in zip(run.replies, expected, strict=True):
        check_reply(frame, reply, BOARD)
    assert run.writes == bus.writes
    assert run.words == bus.words
    assert run.counters == counters | {"busy": 0}
