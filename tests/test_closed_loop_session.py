"""The host's order session against the exchange's order-entry server, its OUCH outbound
decoding against the exchange's encoder (built from the specification's tables), and the
order-log check that every order was answered."""

import pytest

from tickwire.host.order_session import (
    LoginRejected,
    OrderSession,
    SequenceError,
    decode_outbound,
)
from tickwire.sim.closed_loop import check_acknowledged
from tickwire.sim.exchange import Exchange, OrderEntryServer, serve_in_thread
from tickwire.sim.exchange import messages as m
from tickwire.sim.ouch import encode_enter_order, soupbin_unsequenced
from tickwire.sim.scenario import DEFAULT_SYMBOLS, order_flow


def test_outbound_messages_decode_as_the_exchange_encodes_them():
    cases = {
        b"S": dict(timestamp=34_200_000_000_123, event_code="S"),
        b"A": dict(timestamp=5, user_ref_num=7, side="B", quantity=300, symbol="AAPL",
                   price=1_412_300, time_in_force="3", display="Y",
                   order_reference_number=2**35 + 9, capacity="P", intermarket_sweep="N",
                   cross_type="N", order_state="L", clordid="TWSIM100000007"),
        b"E": dict(timestamp=6, user_ref_num=7, quantity=200, price=1_412_100,
                   liquidity_flag="R", match_number=2**35 + 3),
        b"C": dict(timestamp=7, user_ref_num=7, quantity=100, reason="I"),
        b"J": dict(timestamp=8, user_ref_num=8, reason=m.Reject.HALTED,
                   clordid="TWSIM100000008"),
    }
    for kind, values in cases.items():
        decoded = decode_outbound(m.encode(kind, **values))
        assert decoded.pop("type") == kind.decode()
        assert decoded.pop("appendage_length", 0) == 0
        assert decoded == values


@pytest.fixture
def server():
    exchange = Exchange(DEFAULT_SYMBOLS)
    for message in order_flow(400, seed=3):
        exchange.apply_market(message)
    server = OrderEntryServer(exchange, session="TWIRE00001", username="tw", password="secret")
    with serve_in_thread(server):
        yield server


def enter(user_ref_num, symbol="AAPL"):
    return soupbin_unsequenced(encode_enter_order(
        user_ref_num=user_ref_num, side="B", quantity=100, symbol=symbol, price=1_000_000,
        time_in_force="3", display="Y", capacity="P", intermarket_sweep="N", cross_type="N",
        clordid=f"TWSIM1{user_ref_num:08X}"))


def test_the_session_numbers_its_stream_as_tcp_does(server):
    with OrderSession("127.0.0.1", server.port, username="tw", password="secret",
                      isn=2**32 - 10, irs=500) as session:
        assert session.login() == "TWIRE00001"
        assert session.next_sequence == (2**32 - 10 + 1 + 49) % 2**32     # wraps
        session.wait_for(1)                                               # Start of Day
        # Login Accepted (session 10, sequence 20) and System Event (10), each framed in 3.
        assert session.replies[0]["type"] == "S" and session.ack == 501 + (3 + 30) + (3 + 10)
        with pytest.raises(SequenceError):
            session.forward(enter(1), session.next_sequence + 50)
        session.forward(enter(1), session.next_sequence)
        session.forward(enter(2, symbol="ZZZZ"), session.next_sequence)
        session.wait_for(4)
        kinds = [(r["type"], r.get("user_ref_num")) for r in session.replies[1:]]
        assert kinds[0] == ("A", 1) and ("J", 2) in kinds
        assert server.counters["ouch_messages"] == 2


def test_a_wrong_password_is_refused(server):
    with OrderSession("127.0.0.1", server.port, username="tw", password="wrong") as session:
        with pytest.raises(LoginRejected, match="'A'"):
            session.login()


def test_an_order_without_an_answer_or_with_other_fields_is_found():
    log = [{"sent": 1, "user_ref_num": 1, "slot": 0, "side": 0, "quantity": 100,
            "price": 1_000_000},
           {"sent": 1, "user_ref_num": 2, "slot": 0, "side": 1, "quantity": 100,
            "price": 1_000_000},
           {"sent": 0, "user_ref_num": 3, "slot": 0, "side": 1, "quantity": 100, "price": 1}]
    accepted = {"type": "A", "user_ref_num": 1, "clordid": "TWSIM100000001", "side": "B",
                "quantity": 100, "symbol": "AAPL", "price": 1_000_000}
    assert check_acknowledged(log[:1], [accepted], {0: "AAPL"}, "TWSIM1") == []
    problems = check_acknowledged(log, [accepted | {"quantity": 200}], {0: "AAPL"}, "TWSIM1")
    assert problems == ["UserRefNum 1: quantity 200, logged 100",
                        "UserRefNum 2: sent, never accepted nor rejected"]
