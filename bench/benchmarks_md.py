"""Renders ``BENCHMARKS.md`` from the result files in ``bench/results`` (never from memory).

The headline is the latest run of the current harness (``"harness": 12`` in the file): the latest
``full`` run when it is not older than the latest ``quick`` one, else the latest ``quick`` run.
Files of earlier harnesses are listed as retired, with what they measured and why they no longer
stand. Every number in the page comes from those JSON files; the figures are PNGs drawn by
:mod:`bench.figures` from the same run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.burst_hops import section as burst_section
from bench.page_detection import detection_note
from bench.page_format import mix, num, same_decisions_text
from bench.page_latency import commit_curve, latency_split, latency_table, tail_causes
from bench.page_profile import loop_share, profile_tables
from bench.page_restore import restore_table
from bench.page_throughput import MIX_NOTE, cpu_before_after, system_table, verdict_table
from bench.report import MIX_TOLERANCE, shares

HARNESS = 12


TARGET_CPU_US = 20.0
TARGET_P99_LIVE_MS = 100.0
TARGET_P99_HALF_MS = 250.0
TARGET_OVER_QUIX = 2.0
TARGET_OVER_CEILING = 0.4


def _load(results_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    runs = []
    for path in sorted(results_dir.glob("*.json")):
        if path.stem.startswith(("detection-", "burst-")):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        # bench.run's results only: bench.restart's and others' files hold a list of runs
        if isinstance(data, dict) and isinstance(data.get("runs"), dict):
            runs.append((path.stem, data))
    return runs


def _headline(runs: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]] | None:
    current = [(s, d) for s, d in runs if d.get("harness") == HARNESS and "-t" not in s[10:]]
    full = [(s, d) for s, d in current if d.get("mode") == "full"]
    quick = [(s, d) for s, d in current if d.get("mode") == "quick"]
    if full and (not quick or full[-1][1]["date"] >= quick[-1][1]["date"]):
        return full[-1]
    return quick[-1] if quick else None


def _targets(data: dict[str, Any]) -> list[str]:
    runs, ratios = data["runs"], data.get("ratios") or {}
    gate = runs.get("gate") or {}
    lat = data.get("latency", {}).get("gate") or {}
    lines = ["| target (issue 12) | measured | |", "|---|---|---|"]

    def row(target: str, measured: str, ok: bool | None, gap: str) -> None:
        verdict = "-" if ok is None else ("met" if ok else f"**missed** by {gap}")
        lines.append(f"| {target} | {measured} | {verdict} |")

    cpu = gate.get("cpu_s_per_million_events")
    row(
        f"gate CPU ≤ {TARGET_CPU_US:.0f} µs per input event (bench input)",
        f"{num(cpu, 1)} µs",
        None if cpu is None else cpu <= TARGET_CPU_US,
        f"{(cpu or 0) - TARGET_CPU_US:.0f} µs ({(cpu or 0) / TARGET_CPU_US:.1f}x)",
    )
    live = lat.get("live_2000") or {}
    p99 = live.get("p99_ms")
    row(
        f"p99 ≤ {TARGET_P99_LIVE_MS:.0f} ms at 2,000 requests/s live",
        f"{num(p99)} ms",
        None if p99 is None else p99 <= TARGET_P99_LIVE_MS,
        f"{(p99 or 0) - TARGET_P99_LIVE_MS:.0f} ms",
    )
    half = lat.get("half_live_max") or {}
    p99 = half.get("p99_ms")
    row(
        f"p99 ≤ {TARGET_P99_HALF_MS:.0f} ms at half the gate's live maximum",
        f"{num(p99)} ms at {num(half.get('offered_requests_per_s'))} requests/s",
        None if p99 is None else p99 <= TARGET_P99_HALF_MS,
        f"{(p99 or 0) - TARGET_P99_HALF_MS:.0f} ms",
    )
    r = ratios.get("gate_over_quix")
    row(
        f"gate ≥ {TARGET_OVER_QUIX:.0f}x Quix Streams",
        f"{num(r, 2)}x",
        None if r is None else r >= TARGET_OVER_QUIX,
        f"{TARGET_OVER_QUIX - (r or 0):.2f}x ({(r or 0) / TARGET_OVER_QUIX:.0%} of the target)",
    )
    r = ratios.get("gate_over_ceiling")
    row(
        f"gate ≥ {TARGET_OVER_CEILING}x the same-cadence ceiling",
        f"{num(r, 3)}x",
        None if r is None else r >= TARGET_OVER_CEILING,
        f"{TARGET_OVER_CEILING - (r or 0):.2f}x ({(r or 0) / TARGET_OVER_CEILING:.0%} of the"
        " target)",
    )
    for name in ("quix_peer", "faust_peer", "scale_out"):
        run = runs.get(name) or {}
        same = run.get("same_decisions")
        if same is not None:
            wrong = same["differ"] + same["missing"] + same["extra"]
            row(
                f"{name}: every request decided as one gate decided it",
                same_decisions_text(same),
                wrong == 0,
                f"{wrong} requests",
            )
        elif "mix_ok" in run:
            row(
                f"{name}: same verdict mix as the gate (each share within {MIX_TOLERANCE:.1%})",
                f"largest difference {run['mix_vs_gate_max_diff']:.1%}",
                run["mix_ok"],
                f"{run['mix_vs_gate_max_diff'] - MIX_TOLERANCE:.1%}: its rate is not comparable",
            )
    return lines


def _measured_causes(data: dict[str, Any]) -> list[str]:
    """The numbers behind the misses, from this run's profile, curve and peers."""
    out = []
    prof = data.get("profile")
    runs = data["runs"]
    gate, quix = runs.get("gate") or {}, runs.get("quix_peer") or {}
    if prof:
        core = loop_share(
            prof, "event_time", "from_share", "decide_safely", "decision_record", "encode"
        )
        contract = loop_share(prof, "_refusal", "_upload", "on_claim", "on_verdict")
        commit = loop_share(prof, "commit_open")
        out.append(
            f"- *Measured split* (profile below, share of the gate's loop): the pure core both"
            f" peers share (Avro decode, `from_share`, evaluate, decision record and hash, Avro"
            f" encode) {core:.0%}; the contract work the peers skip (trust checks, the photo"
            f" index: status, claims, answers) {contract:.0%}; changelog, offsets and commit"
            f" {commit:.0%}; the rest is the runtime's intake, merge, output writes, metrics"
            " and waiting in `poll`."
        )
    if gate.get("cpu_s_per_million_events") and quix.get("cpu_s_per_million_events"):
        out.append(
            f"- *Against Quix Streams*: the gate spends {gate['cpu_s_per_million_events']:.0f} µs"
            f" per input event, the Quix peer {quix['cpu_s_per_million_events']:.0f} µs while"
            " doing less (no trust checks, photo index, recall ledgers, duplicate memory, and"
            " fewer changelog records): the runtime is leaner than Quix's by about the cost of"
            " that contract work, but 2x Quix would need the gate at half the peer's CPU per"
            " event, i.e. the whole per-event path (core included) at about half its cost."
        )
    curve = data.get("commit_curve") or []
    live = ((data.get("latency") or {}).get("gate") or {}).get("live_2000") or {}
    fresh = next((c for c in curve if c["commit_interval_ms"] == 0), None)
    if fresh and live.get("p99_ms") is not None:
        out.append(
            f"- *Latency, measured*: at 2,000 requests/s a fresh gate holding only the uploads"
            f" and consents had p50 {num(fresh.get('p50_ms_at_2000'))} ms / p99"
            f" {num(fresh.get('p99_ms_at_2000'))} ms (commit curve, `commit_interval_ms=0`); the"
            f" gate that had just decided the whole backlog had p50 {num(live.get('p50_ms'))} ms"
            f" / p99 {num(live.get('p99_ms'))} ms at the same rate. Other work used"
            f" {num(live.get('cores_other_work'), 2)} of the 2 cores meanwhile."
            + latency_split(live.get("split"))
            + tail_causes(live.get("gate_internals"), live.get("p99_ms"))
        )
    scale = runs.get("scale_out") or {}
    if scale.get("verdicts"):
        mine = shares(scale["verdicts"]).get("DENY/UNKNOWN_PHOTO", 0.0)
        ref = shares(gate.get("verdicts")).get("DENY/UNKNOWN_PHOTO", 0.0)
        if mine > ref + 0.001:
            out.append(
                f"- *Two gates decide {mine:.1%} `UNKNOWN_PHOTO` against {ref:.1%} for one*"
                " (fail closed, never `ALLOW`): the event-time merge fix (a caught-up"
                " source whose high watermark passes its position holds the merge) cut it from"
                " 7% (measured on the code before it). Only the two-gate run writes its backlog"
                " while the gates run (so that no rebalance falls in the measurement), through a"
                " batching producer that can append a user's request before the upload it"
                " follows; the merge cannot wait for a record that is not on the broker yet"
                " (docs/performance.md, known limitations). That is the likely rest; this run"
                " does not separate it from a fetch whose high watermark has not come back yet."
                " Until fixed, the two-gate rate is not fully comparable."
            )
    return out


def _retired(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    old = [(s, d) for s, d in runs if d.get("harness") != HARNESS]
    if not old:
        return []
    lines = [
        "## Retired runs (dated note)",
        "",
        "These files were measured with the gate before it ran on `streams/runtime`, before the"
        " trust checks, the photo index and the recall ledgers, and with the harness of issue 6."
        " They describe code that no longer exists and are kept for the record only; no number"
        " above comes from them.",
        "",
        "| file | date | mode | gate requests/s | `UNKNOWN_PHOTO` share of decisions | note |",
        "|---|---|---|---:|---:|---|",
    ]
    for stem, d in old:
        gate = (d.get("runs") or {}).get("gate") or {}
        unknown = shares(gate.get("verdicts")).get("DENY/UNKNOWN_PHOTO")
        note = ""
        if unknown is not None and unknown > 0.05:
            note = "before the event-time merge fix: requests decided before their uploads"
        elif "baseline" in stem:
            note = "issue 6's before-profile run"
        lines.append(
            f"| `bench/results/{stem}.json` | {d.get('date')} | {d.get('mode')} |"
            f" {num(gate.get('requests_per_s'))} |"
            f" {'-' if unknown is None else f'{unknown:.1%}'} | {note} |"
        )
    return lines


def render(results_dir: Path) -> str:
    runs = _load(results_dir)
    head = _headline(runs)
    if head is None:
        return "# Benchmarks\n\nNo results yet: run `make bench-quick` or `make bench`.\n"
    stem, data = head
    m, v, w = data["machine"], data["versions"], data["workload"]
    ratios = data.get("ratios") or {}
    figures = data.get("figures") or {}
    gate = data["runs"].get("gate") or {}
    out = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.run` from `bench/results/*.json`; do not edit by hand."
        " `make bench-quick` (under 10 minutes) or `make bench` (long) rewrites this page and"
        " its figures from one run.",
        "",
        f"Headline run: `bench/results/{stem}.json` ({data['mode']} mode, {data['date']}):"
        f" {w['requests']:,} share requests over {w['users']:,} users, {w['events']:,} input"
        f" events (uploads, consent changes, requests; 8 partitions), run in"
        f" {num(data.get('total_s'))} s.",
        "",
        f"**Machine load.** {m['nproc']} cores ({m['cpu_model']}), shared with other engineers'"
        " work: every row gives the cores that other work used during its measurement. Absolute"
        " rates move with that load; compare ratios within one run.",
        "",
        "## Headline",
        "",
        f"- gate: **{num(gate.get('events_per_s'))} input events/s**"
        f" ({num(gate.get('requests_per_s'))} requests/s),"
        f" **{num(gate.get('cpu_s_per_million_events'), 1)} µs CPU per input event**, verdict"
        f" mix {mix(gate.get('verdicts'), 3)}",
        f"- gate ÷ ceiling = **{num(ratios.get('gate_over_ceiling'), 3)}**;"
        f" gate ÷ Quix Streams = **{num(ratios.get('gate_over_quix'), 2)}**;"
        f" gate ÷ faust = {num(ratios.get('gate_over_faust'), 2)};"
        f" two gates ÷ one = {num(ratios.get('scale_out_over_gate'), 2)}",
        "",
        *system_table(data),
        "",
    ]
    if any(not r.get("complete", True) for r in data["runs"].values()):
        out += [
            "¹ a slow peer is measured on the first part of the input (capped at"
            f" {data['config'].get('faust_cap_s')} s of processing); its verdict mix is of that"
            " part.",
            "",
        ]
    if figures:
        out += ["## Figures", ""]
        for name, path in figures.items():
            out += [f"![{name}]({path})", ""]
        if "detection" in figures:
            out += [detection_note(data, results_dir), ""]
    out += ["## Targets", "", *_targets(data), "", WHY, *_measured_causes(data), ""]
    out += ["## CPU per input event, before and after", "", *cpu_before_after(data), ""]
    out += ["## Decisions by verdict and reason", "", *verdict_table(data), "", MIX_NOTE, ""]
    out += [
        "## Latency (send → decision visible to a `read_committed` reader)",
        "",
        *latency_table(data),
        "",
        "Commit cadence by time as well as size (`RuntimeOptions.commit_interval_ms`,"
        " `CONSENTINEL_COMMIT_INTERVAL_MS`): a fresh gate per interval on a fresh prefix holding"
        " the backlog's uploads and consents (no requests),"
        f" {data['config'].get('paced_s')} s of live traffic at 2,000 requests/s, then above its"
        " maximum to find it again:",
        "",
        *commit_curve(data),
        "",
        "## Live burst: crossing request → alert → suspension → HOLD, hop by hop (#19)",
        "",
        *burst_section(results_dir),
        "",
        "## State restore: consent state and recall ledgers",
        "",
        *restore_table(data),
        "",
        "## Profile of the gate",
        "",
        *profile_tables(data),
        "",
        "## Method",
        "",
        *METHOD,
        "",
        "## Machine and versions",
        "",
        f"- {m['nproc']} cores ({m['cpu_model']}), {m['ram_gb']} GB RAM, Linux {m['kernel']}",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
    ]
    if data.get("errors"):
        out += ["## Errors in this run", "", *[f"- {e}" for e in data["errors"]], ""]
    out += [*_retired(runs), ""]
    return "\n".join(out)


WHY = """\
**Why the misses, as measured.**

- *CPU per event.* The profile below spreads the gate's time over a few hundred Python function
  calls per input event: Avro decode (once per input, in the merge) and encode (once per
  decision), the trust checks (routing hash, time bounds, duplicate digest and its changelog
  record), the rules, the decision record and its SHA-256 chain hash, the photo index (two
  claims and two answers per upload, handled in-process when the index partition is local),
  the state changelog (several records per input: duplicate memory, photo status, index,
  user state, ledgers, head) and the producer calls for all of them. No single function is
  above a tenth of the loop. Earlier work on issue 12 removed the broker round trip of the
  photo index for local partitions (`RuntimeOptions.local_loopback`), its JSON, the
  per-decision metric calls,
  a murmur2 per input, the young-generation GC churn (`gc_threshold0`, `gc.freeze()` after
  restore) and per-record work in the runner; what is left is per-event Python work in the
  gate's rules and state (`streams/gate/processor.py`, `state.py`). Compiling the hot path
  with mypyc was measured (docs/performance.md): 0.82x the CPU with the same decisions, about
  56-59 µs per event, because most of the time is the interpreter's object work (dicts and
  strings of decoded records, JSON of state, allocation). Reaching 20 µs needs a per-batch
  design (columnar decode, one changelog record per batch for the duplicate memory, state
  kept in plain tuples); that is not in this change.
- *Latency.* A decision waits for the batch in progress, its own batch and the commit
  (`commit_interval_ms=0`: every loop turn). Until 2026-11-30 most of the p99 was not the gate's
  work but librdkafka's retry back-off: a transaction begun just after a commit meets the
  coordinator still writing the previous one's markers, `send_offsets_to_transaction` gets
  `CONCURRENT_TRANSACTIONS` and retried after `retry.backoff.ms` (100 ms by default; Java's
  client uses 20 ms for that error). Timing the loop live at 2,000 requests/s showed that call
  at up to 140 ms; the runtime's producer now sets 5 ms, and p99 at 2,000/s went from 245-357 ms
  to 65-81 ms in that experiment. What remains is queueing on two shared cores: when the gate
  gets less than a core, live traffic waits; the curve shows what a longer interval buys.
- *Ceiling and peers.* The ceiling moves bytes through librdkafka (a few µs per event); every
  Python system pays its per-event Python work on one core, so 0.4x the ceiling would need the
  gate at about 2.5x the ceiling's CPU per event. The Quix peer runs the same pure core at its
  own commit cadence (0.5 s) and does less contract work (below).
"""

METHOD = [
    "- **Input** (`bench/gen.py`): share requests over users with a realistic consent mix, an"
    " upload for every photo, 1% of requests for a photo never uploaded; generated once from a"
    " seed, encoded once, produced raw (key = owner, murmur2) under a fresh topic prefix per"
    " system so every system reads the same bytes. The input topics are `LogAppendTime`"
    " (CONTRACT §3), so the backlog's events are a week old at append: the bench runs the gate"
    " with `bench/policy.yaml`, the example policy with **replay time bounds**"
    " (`time: {max_skew_s: 60, max_lateness_s: 17280000}`, 200 days; consents reach 187 days"
    " back) and `CONSENTINEL_DECISION_CLOCK=stream` (decisions stamped with the stream's event"
    " time, so the detectors' windows see the backlog's week).",
    "- **Throughput**: a `read_committed` consumer notes when each output becomes visible; rate ="
    " input events processed between the first and the last visible output ÷ that time"
    " (start-up, restore and the first commit's records excluded). Repeated on fresh topics"
    " when other work used more than a quarter core; the best run is kept, every sample shown.",
    "- **CPU µs per input event**: utime + stime of the process(es) (`/proc/<pid>/stat`, all"
    " threads, librdkafka's included) over that window ÷ input events in it.",
    "- **Verdict mix**: every decision of the run tallied by verdict/reason after the"
    " measurement, dead letters by `error_kind`; a system whose mix differs from the gate's by"
    " more than 2 points on any reason is flagged.",
    "- **Ceiling** (`bench/ceiling.py`): the runtime's consumer/producer settings, batch size and"
    " one transaction per batch, each record forwarded unchanged.",
    "- **Quix Streams peer** (`bench/quix_peer.py`, own virtualenv in"
    " `~/.cache/consentinel/venv-quix` because Quix pins its own confluent-kafka):"
    " `processing_guarantee=exactly-once`, commit every 0.5 s, the three input topics"
    " concatenated, RocksDB state per owner (consent state, photo ownership) with changelogs,"
    " the same `AvroCodec`, `decide_safely` and `decision_record`; no trust checks, photo"
    " index, recall ledgers or controls (so it does less work than the gate).",
    "- **faust peer** (`bench/faust_peer.py`): the same core in one agent, at-least-once, tables"
    " in memory; same simplifications.",
    "- **Detectors**: the gate's decisions of this run copied to a fresh prefix; one"
    " `consentinel detect` (both stages in one process) timed from its first committed offset"
    " to the commit of the last decision.",
    "- **Latency**: live traffic in the backlog's mix (records re-stamped with a fresh"
    " `event_id` and `occurred_at` = now) at a steady rate; latency = visible time -"
    " `occurred_at` (first second not counted), as seen by a `read_committed` consumer with"
    " `fetch.wait.max.ms=10` (a reader's own fetch wait adds to what it sees: at librdkafka's"
    " 500 ms default, or the previous harness's 100 ms, a committed decision can wait that long"
    " in the broker's delayed fetch). The live maximum is what the gate sustained while the"
    " broker ingested the traffic on the same cores. The commit-interval curve runs a fresh"
    " gate per interval on a fresh prefix holding the backlog's uploads and consents.",
    "- **Restore** (`bench/restore.py`): N users' consent states (and, for `consent+recall`, a"
    " recall ledger each: 1-8 transfers) written to the changelog, then a fresh process"
    " restores partitions 0-7 as the gate does on assignment.",
    "- **Garbage collector**: the runtime raises CPython's young-generation threshold and"
    " freezes the objects alive after a restore (and then every 30 s): full collections no"
    " longer walk the long-lived state (a diagnostic run of the previous harness saw 0.4 s"
    " pauses with 100,000 users in memory).",
]
