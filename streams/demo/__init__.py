"""``consentinel demo``: a short scripted story through the real gate, printed as it is decided.

It writes a handful of users' uploads and consents, then requests that exercise each rule, and a
2014-style attempt to hand hundreds of users' photos to an AI vendor for training. The gate runs in
this process; each decision is printed with its explanation as it is committed, then a summary.

The detector (``consentinel detect``, a subprocess started with the gate) then stops a bulk export:
a training job reads thousands of users' photos for acme-vision within minutes of event time,
crossing its ``bulk_export`` limit; the detector raises ``BULK_EXPORT`` and writes
``SUSPEND_RECIPIENT``, the gate holds the job's next reads, and the demo resumes the recipient
(so a rerun starts clean) and stops the detector.

Then the recall loop (CONTRACT §3 "Erasure and recall"): some of the users behind the export ask
for their accounts to be erased (``ErasureRequested`` ``ACCOUNT``); the gate issues one
``RecallOrder`` per user to acme-vision naming the model ``faceprint-2014`` and the photos it
read, with the decisions as evidence; the vendor acknowledges some orders (one only in part), and
the detector raises ``RECALL_OVERDUE`` for every order not fully acknowledged by its ``due_at``.
Each step is checked; the demo fails loudly (exit 1) when one does not happen.

The story is told in simulated time: uploads and consents hours before now, the bulk export spread
over the next ten minutes of event time. So the demo runs the gate and the detector with a copy of
the policy (next to the state directory) that trusts producers' clocks that far (``time:
{max_skew_s, max_lateness_s}``, CONTRACT §3: a replay raises the bounds in its own policy file)
and gives acme-vision a ``recall_within_days`` of 0.0002 (17 s) so that an overdue recall can be
seen; and the gate stamps decisions with stream time (``CONSENTINEL_DECISION_CLOCK=stream``), so
the detector judges the export in the story's own time. The demo prints both changes.

Every run uses fresh ids, so it can be repeated against the same topics. The detector runs under
a name of its own per run (``--app-name consentinel-detector-demo-<run>``, ``--from-now``): it
starts with empty state at the end of its input topics, so an earlier run's export, still
inside the sliding hour, cannot hide this run's crossing, and earlier runs' recall orders are not
raised again; its internal topics and consumer group are deleted when the demo ends.
"""

from streams.demo.script import DEMO_RECALL_DAYS, DEMO_TIME_BOUNDS, VENDOR, demo_policy
from streams.demo.story import run_demo

__all__ = ["DEMO_RECALL_DAYS", "DEMO_TIME_BOUNDS", "VENDOR", "demo_policy", "run_demo"]
