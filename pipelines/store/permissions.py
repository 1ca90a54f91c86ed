"""Who may do what: the roles behind each permission the operations table grants.

A ``Permission`` names what it allows (for the refusal: "user 'x' (roles: …) may not
<what>") and the roles of which any one may do it. The sets of roles and the permissions
that several rows of the table share are named here once; the store's core checks them
(``core.py``) before an operation runs, in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from hilt.pipelines.config import ROLES
from hilt.pipelines.store.recipient_records import RECIPIENT_ROLE


@dataclass(frozen=True)
class Permission:
    """Who may perform an operation: any one of ``roles``."""

    #: For the refusal: "user 'x' (roles: …) may not <what>".
    what: str
    roles: frozenset[str]


EVERYONE = frozenset(ROLES) - {"gateway"}
DATA_WRITERS = frozenset({"admin", "system", "data-scientist"})
REVIEWERS = frozenset({"reviewer", "lead"})
AUDIT_READERS = frozenset({"auditor", "admin", "lead", "dpo", "data-scientist"})

ANYONE = Permission("ask who they are", frozenset(ROLES))
READ_CASES = Permission("get case", EVERYONE)
READ_DECISIONS = Permission(
    "decisions", frozenset({"lead", "data-scientist", "auditor", "admin", "system", "dpo"})
)
AUDIT_READ = Permission("audit read", AUDIT_READERS)
MANAGE_USERS = Permission("add user", frozenset({"admin"}))
#: The dashboards' gateway acting as itself: the demo's sign-in page.
GATEWAY_ONLY = Permission("sign in without a password", frozenset({"gateway"}))
HALT = Permission("halt", frozenset({"lead"}))
#: Data-subject rights are the data-protection officer's (GDPR Arts. 15-22).
SUBJECT_RIGHTS = Permission("subject rights", frozenset({"dpo"}))
#: The notice to the person decided about: the data-protection officer, or an admin.
NOTICE = Permission("issue decision notices", frozenset({"dpo", "admin"}))
#: A production system that reads decisions is a recipient (GDPR Art. 19): it reads, and
#: acknowledges, its own feed of the subjects' changes, never another's.
RECIPIENT = Permission("read subject changes", frozenset({RECIPIENT_ROLE}))
#: Oversight (EU AI Act Art. 14): gold cases, the oversight report, adjudication.
GOLD = Permission("gold", frozenset({"data-scientist", "admin"}))
OVERSIGHT_READ = Permission("oversight read", frozenset({"lead", "auditor", "admin"}))
#: A second person, a lead, decides on a model (EU AI Act Art. 14).
DECIDE_MODELS = Permission("decide on models", frozenset({"lead"}))
#: A loosening of hilt.toml needs a lead's second approval (issue 12, config drift).
CONFIG_DECISION = Permission("approve or reject config changes", frozenset({"lead"}))
#: Post-market monitoring (EU AI Act Art. 72): the scheduler (system), an admin or a lead
#: runs it; the store gives the verdict.
MONITOR = Permission("record a monitoring run", frozenset({"system", "admin", "lead"}))
MONITORING_READ = Permission(
    "read monitoring", frozenset({"lead", "auditor", "admin", "system", "data-scientist"})
)
#: Issue 14, the incident register (EU AI Act Art. 73, GDPR Art. 33). Closing a serious
#: incident further needs a lead who did not open it (checked in ops/incidents.py).
INCIDENT_HANDLERS = frozenset({"lead", "admin", "dpo"})
INCIDENTS_WRITE = Permission("open, update or close incidents", INCIDENT_HANDLERS)
INCIDENTS_READ = Permission("read incidents", INCIDENT_HANDLERS | {"auditor"})
#: Backups are operations' work: the administrator, or the scheduler's system user (a
#: nightly `hilt store backup`). Not the dpo: a backup holds no key and decides nothing about
#: a subject; not the auditor, who writes nothing (a backup writes a folder and an event).
BACKUP = Permission("back up the store", frozenset({"admin", "system"}))
