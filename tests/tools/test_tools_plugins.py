"""Given a plugin installed with an entry point in group 'vistrace.tools', when the registry loads
plugins, then its tools and backends are registered explicitly by the plugin's function."""

from __future__ import annotations

import sys
import textwrap

from vistrace.tools import Registry


def test_entry_point_plugins_register_tools(tmp_path, monkeypatch):
    # given a tiny installed distribution with an entry point (written as dist-info metadata)
    pkg = tmp_path / "vt_plugin_demo.py"
    pkg.write_text(textwrap.dedent('''
        from vistrace.tools import tool

        @tool()
        def shout(text: str) -> str:
            """Upper-case a text.

            Args:
                text: the text
            """
            return text.upper()

        def register(registry):
            registry.add(shout)
    '''))
    dist = tmp_path / "vt_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vt-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vistrace.tools]\ndemo = vt_plugin_demo:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # when a registry loads the plugins
    reg = Registry()
    loaded = reg.load_entry_points()
    # then the plugin's tool is there and works through the registry
    assert "demo" in loaded
    assert reg.get("shout")(text="hi") == "HI"
    sys.modules.pop("vt_plugin_demo", None)


def test_a_broken_plugin_is_named_not_skipped(tmp_path, monkeypatch):
    import pytest

    from vistrace.errors import VistraceError

    dist = tmp_path / "vt_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vt-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vistrace.tools]\nbroken = vt_missing_module:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(VistraceError, match="plugin 'broken'"):
        Registry().load_entry_points()
