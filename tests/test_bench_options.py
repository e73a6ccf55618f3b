"""`python -m tickwire.sim.bench` reads its options before running anything (the whole bench
takes over 20 minutes): --help prints them, an unknown option is refused."""

import pytest

from tickwire.sim import bench


def test_help_lists_the_options_and_runs_nothing(capsys, monkeypatch):
    monkeypatch.setattr(bench, "feed_figures", lambda console: pytest.fail("the bench ran"))
    with pytest.raises(SystemExit) as stop:
        bench.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for option in ("--no-book", "--no-t2t", "--no-replay", "--no-sim", "--no-synth",
                   "--book-synth"):
        assert option in out


def test_an_unknown_option_is_refused_before_anything_runs(capsys, monkeypatch):
    monkeypatch.setattr(bench, "feed_figures", lambda console: pytest.fail("the bench ran"))
    with pytest.raises(SystemExit) as stop:
        bench.main(["--no-boook"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --no-boook" in capsys.readouterr().err
