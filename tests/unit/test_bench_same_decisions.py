"""The bench's scale-out check is per request, not a share tolerance (issue #20).

Two gates that decided 92 of 100,000 requests otherwise than one gate passed the old check (each
reason's share within half a point); the same runs now fail it.
"""

from __future__ import annotations

from typing import Any

from bench.report import check_mixes, same_decisions


def results(gate: dict[str, str], scale_out: dict[str, str]) -> dict[str, Any]:
    def mix(decided: dict[str, str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in decided.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    out = {
        "runs": {
            "gate": {"verdicts": mix(gate)},
            "scale_out": {"verdicts": mix(scale_out)},
            "quix_peer": {"verdicts": mix(scale_out)},
        }
    }
    out["runs"]["scale_out"]["same_decisions"] = same_decisions(gate, scale_out)
    check_mixes(out)
    return out


ONE_GATE = {f"r{i}": "ALLOW/CONSENTED" if i % 3 else "DENY/NO_CONSENT" for i in range(100_000)}


def test_a_fraction_of_a_percent_decided_otherwise_fails_the_scale_out_not_a_peer() -> None:
    two = dict(ONE_GATE)
    for i in range(1, 92 * 3, 3):  # 92 consented requests denied UNKNOWN_PHOTO
        two[f"r{i}"] = "DENY/UNKNOWN_PHOTO"
    out = results(ONE_GATE, two)
    scale_out = out["runs"]["scale_out"]
    assert scale_out["same_decisions"]["differ"] == 92
    assert scale_out["same_decisions"]["examples"][0][1:] == [
        "ALLOW/CONSENTED",
        "DENY/UNKNOWN_PHOTO",
    ]
    assert scale_out["mix_ok"] is False
    assert out["runs"]["quix_peer"]["mix_ok"] is True, "a peer is held to the share tolerance"


def test_the_same_decisions_pass() -> None:
    out = results(ONE_GATE, dict(ONE_GATE))
    assert out["runs"]["scale_out"]["mix_ok"] is True


def test_missing_extra_and_doubly_decided_requests_fail() -> None:
    two = dict(ONE_GATE)
    del two["r0"]
    two["stray"] = "DENY/NO_CONSENT"
    two["r5"] = ONE_GATE["r5"] + "|" + ONE_GATE["r5"]  # decided twice
    same = same_decisions(ONE_GATE, two)
    assert (same["differ"], same["missing"], same["extra"]) == (1, 1, 1)
    assert results(ONE_GATE, two)["runs"]["scale_out"]["mix_ok"] is False
