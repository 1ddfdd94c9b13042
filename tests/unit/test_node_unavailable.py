"""A node that cannot start says what is missing and how to install it."""

from __future__ import annotations

import shutil

import pytest

from harness.node import NodeUnavailable, create_node, uml


def test_uml_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda name, *a, **k: None if name == "linux.uml" else real_which(name, *a, **k),
    )
    with (
        pytest.raises(
            NodeUnavailable, match=r"linux\.uml not found: apt-get install user-mode-linux"
        ),
        create_node("uml"),
    ):
        pass


def test_uml_without_its_modules(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    monkeypatch.setattr(uml, "MODULES_DIR", uml.Path("/nonexistent/uml/modules"))
    with (
        pytest.raises(
            NodeUnavailable,
            match="no UML kernel modules in /nonexistent/uml/modules: apt-get install user-mode-linux",
        ),
        create_node("uml"),
    ):
        pass


def test_netns_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(NodeUnavailable, match="needs root"), create_node("netns"):
        pass


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown node kind 'vm'"):
        create_node("vm")
