"""Incidents: what is wrong now, compared with what was wrong at the last look.

Alerts are edge-triggered on a level: each look observes, per subject (a job, a blocking
check, a freshness check), whether it is failing or healthy. A subject that turns failing
opens an incident (one message); one that turns healthy again closes it (one recovery
message); anything else, however many looks it lasts, sends nothing. The open incidents
are the state carried from look to look (the alert sensor's cursor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Incident:
    key: str  # the subject: "run:<job>", "check:<asset>:<check>"
    title: str
    detail: str
    link: str
    run_id: str | None = None
    asset: str | None = None
    check: str | None = None


@dataclass(frozen=True)
class Transition:
    incident: Incident
    recovered: bool

    def payload(self) -> dict[str, Any]:
        """Slack-compatible JSON: a ``text`` fallback and one markdown section."""
        i = self.incident
        if self.recovered:
            head = f":white_check_mark: Recovered: {i.title}"
        else:
            head = f":rotating_light: {i.title}"
        facts = [
            f"*{k}*: `{v}`"
            for k, v in (("run", i.run_id), ("asset", i.asset), ("check", i.check))
            if v
        ]
        body = "\n".join(
            [head, *facts, i.detail if not self.recovered else "", f"<{i.link}|Open in Dagster>"]
        )
        return {
            "text": head,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": body.strip()}}],
        }


def transitions(
    open_incidents: dict[str, dict[str, Any]],
    failing: dict[str, Incident],
    healthy: dict[str, Incident],
) -> list[Transition]:
    """What to say now: newly failing subjects and recovered ones. Subjects not observed
    this time (no run of the job since, say) keep their state."""
    out = [Transition(i, False) for k, i in sorted(failing.items()) if k not in open_incidents]
    out += [Transition(i, True) for k, i in sorted(healthy.items()) if k in open_incidents]
    return out


def apply(open_incidents: dict[str, dict[str, Any]], done: Transition) -> dict[str, dict[str, Any]]:
    """The open incidents after ``done`` was delivered."""
    after = dict(open_incidents)
    if done.recovered:
        after.pop(done.incident.key, None)
    else:
        after[done.incident.key] = asdict(done.incident)
    return after
