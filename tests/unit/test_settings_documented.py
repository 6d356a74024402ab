"""Every setting is documented where operators look: the settings object, the Functions
template (local.settings.example.json) and the README's settings table list the same names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hotpatch.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
#: A row of the README's settings table: | `HOTPATCH_NAME` | default | meaning |
_ROW = re.compile(r"^\| `(HOTPATCH_[A-Z0-9_]+)` \|", re.MULTILINE)


def readme_settings() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return _ROW.findall(table)


def test_the_settings_object_the_functions_template_and_the_readme_list_the_same_names() -> None:
    in_settings = {PREFIX + name.upper() for name in Settings.model_fields}
    template = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    in_template = {name for name in template["Values"] if name.startswith(PREFIX)}
    in_readme = readme_settings()

    assert in_template == in_settings
    assert set(in_readme) == in_settings
    assert len(in_readme) == len(set(in_readme)), "a setting is listed twice in the README"


def test_the_readme_gives_each_setting_s_default_as_the_settings_object_has_it() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("sweep_schedule", "catalog_schedule", "remediate_schedule"):
        default = Settings.model_fields[name].default
        assert f"| `{PREFIX}{name.upper()}` | `{default}` |" in text
