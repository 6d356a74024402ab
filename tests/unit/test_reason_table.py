"""The README's reason-code table says exactly what `hotpatch.core.reasons` declares."""

from __future__ import annotations

import re
from pathlib import Path

from hotpatch.core.reasons import RULES, ReasonCode

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| `([a-z0-9_]+)` \| ([^|]+) \| ([^|]+) \| (.+) \|$")


def _readme_rows() -> dict[str, tuple[str, str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Reason codes", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in section.splitlines():
        match = _ROW.match(line.strip())
        if match:
            code, state, actions, meaning = match.groups()
            assert code not in rows, f"{code} is listed twice"
            rows[code] = (state.strip(), actions.strip(), meaning.strip())
    return rows


def _declared() -> dict[str, tuple[str, str, str]]:
    return {
        code.value: (
            f"`{rule.state.value}`" if rule.state else "signal",
            " / ".join(f"`{action.value}`" for action in rule.actions) or "-",
            rule.meaning,
        )
        for code, rule in RULES.items()
    }


def test_the_readme_lists_every_reason_code_with_its_state_actions_and_meaning() -> None:
    assert _readme_rows() == _declared()


def test_the_table_is_read_from_the_readme_not_assumed() -> None:
    rows = _readme_rows()
    assert len(rows) == len(ReasonCode) > 30
    assert rows["regular_channel_build"][:2] == ("`misconfigured`", "`investigate`")
