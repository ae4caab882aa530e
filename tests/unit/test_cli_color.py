"""Colour in `flowpin validate` and `flowpin diff`: on a terminal only, never with NO_COLOR."""

from __future__ import annotations

import io

import pytest

from controller.cli.language import _color


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _color(Terminal())
    assert not _color(io.StringIO())  # a pipe or a file: no escape codes


@pytest.mark.parametrize("value", ["1", "true", "anything"])
def test_no_color_turns_colour_off_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NO_COLOR", value)
    assert not _color(Terminal())


def test_an_empty_no_color_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "")
    assert _color(Terminal())
