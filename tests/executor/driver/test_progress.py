"""The wait's progress in a notebook is tqdm.auto's bar (the notebook's widget), not ours;
in a plain pipe (logs) nothing is drawn at all."""

from __future__ import annotations

import sys
import types

import pytest

from plait.executor.driver import progress


class FakeBar:
    made: list[FakeBar] = []

    def __init__(self, total: int, desc: str, unit: str, leave: bool) -> None:
        self.total, self.n, self.closed, self.refreshed = total, 0, False, 0
        FakeBar.made.append(self)

    def refresh(self) -> None:
        self.refreshed += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def notebook(monkeypatch):
    """A Jupyter kernel (IPython with a kernel) with tqdm installed; stderr is no tty."""
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython",
                        types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeBar))
    monkeypatch.setattr(progress, "enabled", True)
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)
    FakeBar.made.clear()


def test_in_a_notebook_the_wait_is_a_tqdm_bar_that_fills_and_closes(notebook):
    shown = progress.Progress()
    shown.update(3, 12)
    shown.update(12, 12)
    shown.close()
    (bar,) = FakeBar.made
    assert (bar.n, bar.total, bar.refreshed, bar.closed) == (12, 12, 2, True)


def test_outside_a_notebook_and_a_terminal_nothing_is_drawn(notebook, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "IPython", None)
    shown = progress.Progress()
    shown.update(3, 12)
    shown.close()
    assert FakeBar.made == [] and capsys.readouterr().err == ""
