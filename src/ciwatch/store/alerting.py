"""The SQL of alerting, by reason to change: alert rows and evaluation reads (`alerts.py`), the
transactional outbox (`outbox.py`), silences (`silences.py`). This module re-exports the names
their importers use; code outside `ciwatch.store` goes through the store's `AlertStore`
protocol (`store/base.py`) instead of these functions.
"""

from __future__ import annotations

from ciwatch.store.alerts import (
    Change,
    EvaluationInputs,
    Pruned,
    alerts_in,
    apply_changes,
    evaluation_inputs,
    failing_jobs_of,
    load_alerts,
    prune_alerting,
    waiting_runs_in,
)
from ciwatch.store.outbox import (
    PENDING,
    WAITING,
    ChannelTrouble,
    NewNotice,
    OutboxRow,
    channel_troubles,
    claim,
    outbox_rows,
    record,
)
from ciwatch.store.silences import (
    SilenceRow,
    add_silence,
    delete_silence,
    expire_silence,
    get_silence,
    list_silences,
    silence_from_row,
    silences_in,
)

__all__ = [
    "PENDING",
    "WAITING",
    "Change",
    "ChannelTrouble",
    "EvaluationInputs",
    "NewNotice",
    "OutboxRow",
    "Pruned",
    "SilenceRow",
    "add_silence",
    "alerts_in",
    "apply_changes",
    "channel_troubles",
    "claim",
    "delete_silence",
    "evaluation_inputs",
    "expire_silence",
    "failing_jobs_of",
    "get_silence",
    "list_silences",
    "load_alerts",
    "outbox_rows",
    "prune_alerting",
    "record",
    "silence_from_row",
    "silences_in",
    "waiting_runs_in",
]
