"""The stem4d section of ``stacklab demo`` runs quickly and meets its targets."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")


def test_quick_demo_section_passes():
    from stacklab import demo

    assert "stem4d" in demo.available()
    (section,) = demo.run(["stem4d"], quick=True, seed=1)
    names = {m.name: m for m in section.metrics}
    assert names["counting recall"].value >= 0.99 and names["counting precision"].value >= 0.99
    assert section.ok, [(m.name, m.value) for m in section.metrics]
    assert section.figures and "planted electrons" in section.text
    names = [m.name for m in section.metrics]
    assert "DPC phase correlation with truth" in names and len(section.figures) == 2
