from __future__ import annotations

import pytest

from controller.model.graph import adjacency, cycles, reachable


def steps(*specs: tuple[str, dict[str, object]]) -> list[dict[str, object]]:
    return [{"id": step_id, **fields} for step_id, fields in specs]


def test_edges_from_next_branches_and_goto() -> None:
    graph = adjacency(
        steps(
            ("a", {"next": "b", "onError": "goto:d"}),
            ("b", {"condition": {"then": "c", "else": "end"}}),
            ("c", {"next": "unknown"}),
            ("d", {}),
        )
    )
    assert graph == {"a": ["b", "d"], "b": ["c"], "c": [], "d": []}
    assert reachable(graph, "a") == {"a", "b", "c", "d"}
    assert reachable(graph, "c") == {"c"}


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": ["b"], "b": []}, []),
        ({"a": ["a"]}, [["a"]]),
        ({"a": ["b"], "b": ["a"]}, [["a", "b"]]),
        ({"a": ["b"], "b": ["c"], "c": ["b", "d"], "d": []}, [["b", "c"]]),
        ({"a": ["b", "c"], "b": ["a"], "c": ["d"], "d": ["c"]}, [["c", "d"], ["a", "b"]]),
    ],
)
def test_cycles(graph: dict[str, list[str]], expected: list[list[str]]) -> None:
    assert sorted(cycles(graph)) == sorted(expected)


def test_cycles_on_a_long_chain_do_not_recurse() -> None:
    n = 50_000
    graph = {str(i): [str(i + 1)] for i in range(n)}
    graph[str(n)] = ["0"]
    (component,) = cycles(graph)
    assert len(component) == n + 1
