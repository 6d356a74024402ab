"""History is exactly what changed: replaying a machine's transitions gives its state in every
sweep, whatever the sequence of sweeps (machines appearing, changing, vanishing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from hotpatch.core.models import Action, State
from hotpatch.ports.store import VerdictQuery, VerdictRow
from hotpatch.store.memory import MemoryStore

T0 = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
MACHINES = 6

#: One sweep: the state of each machine it saw (a machine it did not see is absent).
sweeps = st.lists(
    st.dictionaries(st.integers(0, MACHINES - 1), st.sampled_from(list(State)), max_size=MACHINES),
    min_size=1,
    max_size=6,
)


def row(number: int, state: State) -> VerdictRow:
    return VerdictRow(
        id=f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/m{number}",
        name=f"m{number}",
        subscription="s",
        resource_group="rg",
        os=None,
        ring=None,
        tags={},
        state=state,
        action=Action.NONE,
        eligible=True,
        reasons=(),
    )


@settings(max_examples=60, deadline=None)
@given(sweeps, st.integers(1, 5))
def test_replaying_the_transitions_gives_each_sweep_s_states(
    history: list[dict[int, State]], chunk_rows: int
) -> None:
    store = MemoryStore(chunk_rows=chunk_rows)
    for day, states in enumerate(history):
        writer = store.begin_snapshot(f"run-{day}", T0 + timedelta(days=day))
        writer.add(row(number, state) for number, state in sorted(states.items()))
        writer.commit()

    for number in range(MACHINES):
        transitions = store.history(row(number, State.UNKNOWN).id)
        for day, states in enumerate(history):
            replayed = None
            for transition in transitions:
                if transition.at <= T0 + timedelta(days=day):
                    assert transition.from_state == replayed  # each starts where the last ended
                    replayed = transition.to_state
            assert replayed == states.get(number)
        assert all(t.from_state != t.to_state for t in transitions)  # only changes are kept

    latest = store.latest_verdicts(VerdictQuery(), page_size=100)
    assert {r.name: r.state for r in latest.rows} == {
        f"m{number}": state for number, state in history[-1].items()
    }
