"""hilt.toml → typed, validated settings of one use case.

Everything use-case specific (which column is the id, the target, the features, what is
personal data, what a reviewer may see, who may do what) lives in hilt.toml. No other module
names a column of a particular data set: a different tabular use case needs only a different
hilt.toml.

Errors name the file and the key, e.g.
``data/hilt.toml: columns.age.type: Input should be 'int', 'float', ...``.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hilt.pipelines.errors import ConfigError

Role = Literal["reviewer", "lead", "data-scientist", "auditor", "dpo", "admin", "system", "gateway"]
#: system: a production system pushing cases and predictions and reading decisions.
#: gateway: the dashboard server; it may only act on behalf of a named user (whose own
#: roles then apply) and has no permissions of its own.
ROLES: tuple[str, ...] = (
    "reviewer",
    "lead",
    "data-scientist",
    "auditor",
    "dpo",
    "admin",
    "system",
    "gateway",
)
ColumnType = Literal["int", "float", "category", "bool", "string"]

#: Column names become SQL identifiers; keep them plain.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: Names the store uses for its own columns; a use case may not reuse them.
RESERVED_COLUMNS = frozenset(
    {"case_id", "subject_ref", "ingest_seq", "created_at", "label", "label_source", "source"}
)
#: The legal minimum for keeping automatically generated logs (EU AI Act Arts. 19, 26(6)).
MIN_AUDIT_RETENTION_DAYS = 183
USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class UseCase(_Strict):
    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    #: The column holding the case id (unique per case; required in every ingested row).
    id_column: str
    #: The column holding the external subject id; None: every case is its own subject.
    subject_column: str | None = None
    #: Intended purpose, as stated in the technical documentation.
    purpose: str = ""


class Target(_Strict):
    column: str
    #: The classes as they appear in the data, written as strings ("1", "0").
    classes: Annotated[list[str], Field(min_length=2)]
    positive: str
    #: Human-readable names of the classes, shown to reviewers.
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Target:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be distinct")
        if self.positive not in self.classes:
            raise ValueError(f"positive class {self.positive!r} is not one of classes")
        unknown = set(self.labels) - set(self.classes)
        if unknown:
            raise ValueError(f"labels name classes that do not exist: {sorted(unknown)}")
        return self

    def label_of(self, cls: str) -> str:
        return self.labels.get(cls, cls)


class Column(_Strict):
    type: ColumnType
    description: str = ""
    nullable: bool = False
    #: Allowed values of a category column (as strings).
    levels: list[str] | None = None
    min: float | None = None
    max: float | None = None
    #: Longest text accepted in a string column.
    max_length: int = Field(default=200, ge=1, le=100_000)
    #: How a reviewer sees the value, e.g. "{:,.0f} DM" or "{} months".
    format: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Column:
        if self.type == "category":
            if not self.levels:
                raise ValueError("a category column needs a non-empty list of levels")
            if len(set(self.levels)) != len(self.levels):
                raise ValueError("levels must be distinct")
        elif self.levels is not None:
            raise ValueError("levels are only allowed for category columns")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError("min and max are only allowed for int and float columns")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self


class Review(_Strict):
    #: Override reason codes: code → explanation shown to the reviewer.
    reason_codes: Annotated[dict[str, str], Field(min_length=1)]
    comment_required: bool = False
    max_comment_length: int = Field(default=2000, ge=1, le=100_000)
    blind_first: bool = False
    lease_seconds: int = Field(default=600, ge=10, le=86_400)
    queue_strategy: Literal["uncertainty", "random", "oldest"] = "uncertainty"
    decision_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)


class Retention(_Strict):
    """Retention periods in days (GDPR Art. 5(1)(e)); the audit log keeps the legal minimum."""

    audit_log_days: int = Field(default=3650, ge=1)
    cases_days: int = Field(default=1825, ge=1)
    predictions_days: int = Field(default=1825, ge=1)
    decisions_days: int = Field(default=1825, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Retention:
        if self.audit_log_days < MIN_AUDIT_RETENTION_DAYS:
            raise ValueError(
                f"audit_log_days must be at least {MIN_AUDIT_RETENTION_DAYS} "
                "(six months, EU AI Act Arts. 19 and 26(6))"
            )
        # Records outlive the data they describe, and the log outlives them all, so that a
        # removal never leaves a record without its case or a row without its audit event.
        for name in ("predictions_days", "decisions_days"):
            if getattr(self, name) < self.cases_days:
                raise ValueError(f"{name} must be at least cases_days ({self.cases_days})")
        for name in ("cases_days", "predictions_days", "decisions_days"):
            if getattr(self, name) > self.audit_log_days:
                raise ValueError(
                    f"{name} must not exceed audit_log_days ({self.audit_log_days}): the audit "
                    "log must outlive the records it proves"
                )
        return self


#: A Dask scheduler's address: ``tcp://HOST:PORT``.
SCHEDULER_ADDRESS = r"^tcp://[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$"


class Training(_Strict):
    """How training data is drawn from the store (EU AI Act Arts. 10, 15(4))."""

    #: Share of the cases labelled at ingest that form the holdout, fixed at workspace
    #: creation (a salted hash of the case id); holdout labels never come from feedback.
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    #: At most this share of the training rows may carry labels that a reviewer accepted
    #: unchanged from the model, so the model cannot simply confirm itself.
    max_accepted_share: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Where a retraining run trains: ``local`` (XGBoost on this machine's cores) or
    #: ``dask`` (``xgboost.dask`` on the Dask cluster at ``scheduler``; the snapshot is read
    #: in partitions by the workers, which must see the workspace's snapshots folder).
    #: Overridable per run: ``hilt retrain -p engine dask -p scheduler tcp://HOST:PORT``.
    engine: Literal["local", "dask"] = "local"
    #: The Dask scheduler's address (``tcp://HOST:PORT``) for ``engine = "dask"``.
    scheduler: str | None = Field(default=None, pattern=SCHEDULER_ADDRESS)


#: What ``[tracking] uri`` may be: an MLflow tracking server, by http(s) URL.
_SERVER_URL = re.compile(r"^https?://[^/?#@\s]+(/[^?#@\s]*)?$")


class Tracking(_Strict):
    """Where the workspace's MLflow runs, artifacts and registry mirror live.

    ``uri``: an MLflow tracking server (``http://host:5000``), whose artifact store holds the
    artifacts (``mlflow server`` serves them); no local MLflow store is then created in the
    workspace. Empty: the workspace's own ``mlflow.db`` and ``mlartifacts/``. Credentials are
    never in hilt.toml (a user name, password or query in the URL is refused): MLflow reads
    them from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` or
    ``MLFLOW_TRACKING_TOKEN``.
    """

    uri: str | None = None

    @field_validator("uri")
    @classmethod
    def _server_url(cls, uri: str | None) -> str | None:
        if uri is not None and not _SERVER_URL.match(uri):
            raise ValueError(
                "must be an MLflow tracking server's http:// or https:// URL, without a user "
                "name, password, query or fragment (credentials go in MLFLOW_TRACKING_USERNAME"
                "/PASSWORD or MLFLOW_TRACKING_TOKEN, never in hilt.toml)"
            )
        return uri


class Gate(_Strict):
    """The promotion gate a challenger must pass before a person may approve it."""

    metric: Literal["auc", "accuracy", "f1"] = "auc"
    floor: float = Field(default=0.65, ge=0.0, le=1.0)
    #: Largest allowed difference in positive rate between groups of a protected attribute.
    max_subgroup_gap: float = Field(default=0.25, ge=0.0, le=1.0)
    #: How much worse than the champion (on the metric) a challenger may be.
    tolerance: float = Field(default=0.02, ge=0.0, le=1.0)


class Access(_Strict):
    #: Single-person mode (no sign-in proxy): the one user the dashboards act as. Every
    #: event they write says that nobody proved who was at the keyboard.
    local_user: str | None = None
    #: A sign-in proxy in front of the dashboards: the sha256 (hex) of the secret it sends
    #: with every request (header ``X-Hilt-Proxy-Secret``). The store service accepts a
    #: dashboard's ``X-Forwarded-User`` only with that secret; there is no local user then.
    #: Only the hash is kept here: this file is read by many and recorded in the audit log.
    proxy_secret_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: API tokens are refused this many days after they were issued.
    token_days: int = Field(default=90, ge=1, le=3650)
    #: user name → roles
    users: dict[str, list[Role]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Access:
        for name, roles in self.users.items():
            if not USER_NAME.match(name):
                raise ValueError(f"user name {name!r} must match {USER_NAME.pattern}")
            if not roles:
                raise ValueError(f"user {name!r} has no roles")
        if self.local_user is not None and self.local_user not in self.users:
            raise ValueError(f"local_user {self.local_user!r} is not one of users")
        if self.local_user is not None and self.proxy_secret_sha256 is not None:
            raise ValueError(
                "local_user is for single-person mode without a sign-in proxy; remove it "
                "when proxy_secret_sha256 is set"
            )
        return self


class Audit(_Strict):
    #: The Ed25519 public key that verifies checkpoints ("ed25519:<base64>"), pinned here
    #: so that whoever can write the database cannot silently swap the signing key.
    public_key: str | None = None


class Processing(_Strict):
    """Facts for the record of processing activities (GDPR Art. 30, `hilt records`)."""

    controller: str = "(the controller: name and contact details)"
    dpo_contact: str = "(the data-protection officer's contact details)"
    #: The lawful basis of processing the cases (the use case's own).
    lawful_basis: str = (
        "GDPR Art. 6(1)(b): steps prior to entering into a contract, at the data subject's request"
    )
    #: Recipients outside hilt's own roles (e.g. the production system's operator).
    recipients: list[str] = Field(default_factory=list)
    #: Transfers to third countries, if any.
    transfers: str = "none"


class Limits(_Strict):
    max_rows_per_request: int = Field(default=100_000, ge=1)
    max_text_length: int = Field(default=2000, ge=1)


class Fields(_Strict):
    """The roles the columns play."""

    #: Model inputs.
    features: Annotated[list[str], Field(min_length=1)]
    #: Personal-data columns: stored apart from the features (encrypted, erasable).
    personal: list[str] = Field(default_factory=list)
    #: Protected attributes, for subgroup metrics and the promotion gate.
    protected: list[str] = Field(default_factory=list)
    #: Columns a reviewer may see, in this order (data minimisation).
    display: list[str] = Field(default_factory=list)
    #: Personal columns that may nevertheless be displayed to reviewers.
    display_personal: list[str] = Field(default_factory=list)


class Oversight(_Strict):
    """Human oversight of the reviewers (EU AI Act Art. 14): gold cases, double review, and
    the automation-bias alerts of the oversight dashboard."""

    #: Share of a reviewer's cases that are gold cases (known answers from the holdout), when
    #: gold cases are available (`hilt gold add`); the reviewer cannot tell them apart.
    gold_rate: float = Field(default=0.0, ge=0.0, le=0.5)
    #: Share of cases (a salted hash of the case id) that two reviewers decide independently;
    #: a disagreement goes to the adjudication queue of a lead.
    double_review_share: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Reviewer statistics and alerts cover the decisions of this many days.
    window_days: int = Field(default=30, ge=1, le=3650)
    #: Rubber-stamping alert: accept rate at least this ...
    alert_accept_rate: float = Field(default=0.95, gt=0.0, le=1.0)
    #: ... while the median time on item is at most this many seconds.
    alert_median_seconds: float = Field(default=5.0, gt=0.0, le=3600.0)
    #: Gold alert: accuracy on gold cases below this.
    alert_gold_accuracy: float = Field(default=0.8, gt=0.0, le=1.0)
    #: No rubber-stamping alert before a reviewer has made this many final decisions.
    alert_min_decisions: int = Field(default=20, ge=1)
    #: No gold alert before a reviewer has decided this many gold cases.
    alert_min_gold: int = Field(default=5, ge=1)
    #: Share of a new gold set on which the champion is wrong (as far as the holdout has
    #: such cases): a reviewer who only agrees with the model cannot score well on them.
    gold_error_share: float = Field(default=0.5, ge=0.0, le=1.0)


class Governance(_Strict):
    """The go-live record of a high-risk deployment (``hilt check go-live``): the impact
    assessments done before the system is put into use, who owns its risks, and how fresh
    the proof that it is watched must be. The use case's intended purpose is
    ``[use_case] purpose``.

    Defaults leave the assessments unrecorded: an old hilt.toml still loads, and the go-live
    check names what is missing."""

    #: The data-protection impact assessment (GDPR Art. 35): its reference and the date it
    #: was completed (or last reviewed).
    dpia_reference: str = Field(default="", max_length=100, pattern=r"^[^\n\r]*$")
    dpia_date: date | None = None
    #: The fundamental-rights impact assessment (EU AI Act Art. 27, named for credit
    #: scoring under Annex III 5(b)): its reference and date.
    fria_reference: str = Field(default="", max_length=100, pattern=r"^[^\n\r]*$")
    fria_date: date | None = None
    #: An assessment older than this many months counts as expired: review it, then
    #: record the new date.
    review_months: int = Field(default=12, ge=1, le=60)
    #: Who owns the deployment's risks: a role or function (e.g. "Head of Credit Risk"),
    #: not a person's name (this file is read by many and recorded in the audit log).
    risk_owner: str = Field(default="", max_length=200, pattern=r"^[^\n\r]*$")
    #: The newest signed audit checkpoint may be at most this many days old.
    max_checkpoint_age_days: int = Field(default=7, ge=1, le=366)
    #: The newest monitoring run (EU AI Act Art. 72) may be at most this many days old.
    max_monitoring_age_days: int = Field(default=31, ge=1, le=366)

    @model_validator(mode="after")
    def _check(self) -> Governance:
        for what in ("dpia", "fria"):
            reference = getattr(self, f"{what}_reference").strip()
            dated = getattr(self, f"{what}_date") is not None
            if dated and not reference:
                raise ValueError(f"{what}_date is set but {what}_reference is empty")
        return self


class Actionable(_Strict):
    """A feature the person decided about can change, and how (``[notice] actionable``):
    the counterfactual search of the decision notice tries only these changes."""

    #: Numbers: which way the person can move it ("both": either way).
    direction: Literal["increase", "decrease", "both"] = "both"
    #: Numbers: the allowed range of the changed value (also within the column's min/max).
    min: float | None = None
    max: float | None = None
    #: Numbers: the search tries multiples of this step away from the person's value
    #: (default: a 40th of the allowed range; 1 for an int column at least).
    step: float | None = Field(default=None, gt=0.0)
    #: Categories: the levels the person could move to (default: every level).
    levels: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Actionable:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self


class Notice(_Strict):
    """The decision notice to the person decided about (EU AI Act Arts. 86, 26(11); GDPR
    Arts. 13-15, 22(3)), in the use case's words: `hilt subject notice`."""

    #: What the AI system is, in a phrase ("a computer model that estimates ...").
    system: str = "an AI system (a statistical model) that makes a recommendation"
    #: What it was used for; empty: the use case's purpose.
    purpose: str = ""
    #: The human role that decides, by the store's role of whoever decided (never a name).
    decided_by: dict[str, str] = Field(
        default_factory=lambda: {
            "reviewer": "a trained member of staff",
            "lead": "a senior member of staff",
        }
    )
    #: Where the data the system used came from (GDPR Arts. 13(1)(e), 14(1)(d), 14(2)(f)).
    data_sources: str = "the data you gave us with your application"
    #: How to contest the decision (who to write to, by when).
    contest: str = (
        "You may contest this decision and ask for it to be looked at again by another "
        "person: write to the data-protection officer. You may also give your point of view "
        "and ask for the data we hold about you."
    )
    #: How many of the main factors of the recommendation the notice names.
    factors: int = Field(default=3, ge=1, le=10)
    #: The features the person can change, with direction and bounds (the counterfactual
    #: search tries no other feature).
    actionable: dict[str, Actionable] = Field(default_factory=dict)
    #: At most this many features changed together (1: single changes only; 2: then pairs).
    max_changed: int = Field(default=2, ge=1, le=2)
    #: The outcome the person applied for (a class of ``[target]``; empty: its positive
    #: class). Where the model recommended it, the notice says so and looks for no change.
    favourable: str = ""


class Monitoring(_Strict):
    """Post-market monitoring of the champion (EU AI Act Arts. 72, 26(5)): the thresholds the
    store applies to a monitoring run's statistics (``hilt monitor``). The store applies its
    own copy of them (the config in force), never a request's."""

    #: A run compares the cases scored by the champion in the last this many days ...
    window_days: int = Field(default=30, ge=1, le=3650)
    #: ... with its training snapshot; below this many cases it names no drift (too few).
    min_cases: int = Field(default=50, ge=1)
    #: Population stability index of a feature (training bins): a warning from this ...
    psi_warning: float = Field(default=0.1, gt=0.0)
    #: ... a breach from this ...
    psi_breach: float = Field(default=0.25, gt=0.0)
    #: ... and a serious breach from this (an incident under Art. 73 may follow).
    psi_serious: float = Field(default=0.5, gt=0.0)
    #: A feature's drift counts only where its test (KS, chi-square) is also below this.
    p_value: float = Field(default=0.01, gt=0.0, lt=1.0)
    #: PSI of the champion's scores (live against training): warning, breach, serious.
    score_psi_warning: float = Field(default=0.1, gt=0.0)
    score_psi_breach: float = Field(default=0.25, gt=0.0)
    score_psi_serious: float = Field(default=0.5, gt=0.0)
    #: A feature's missing-value rate this much above its rate in training is a breach.
    missing_rate_increase: float = Field(default=0.05, gt=0.0, le=1.0)
    #: Share of the reviewers' final decisions in the window that override the model.
    override_rate_max: float = Field(default=0.3, gt=0.0, le=1.0)
    #: No override-rate breach before this many final decisions in the window.
    min_decisions: int = Field(default=20, ge=1)
    #: Realised performance (the gate's metric on outcomes) below this is a breach;
    #: None: the gate's floor.
    realised_floor: float | None = Field(default=None, ge=0.0, le=1.0)
    #: No realised-performance breach before this many outcomes of scored cases.
    min_outcomes: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Monitoring:
        for stem in ("psi", "score_psi"):
            w, b, s = (getattr(self, f"{stem}_{x}") for x in ("warning", "breach", "serious"))
            if not w <= b <= s:
                raise ValueError(f"{stem}_warning <= {stem}_breach <= {stem}_serious must hold")
        return self


class Settings(_Strict):
    """One use case, as read from hilt.toml."""

    use_case: UseCase
    target: Target
    columns: Annotated[dict[str, Column], Field(min_length=1)]
    fields: Fields
    review: Review
    retention: Retention = Field(default_factory=Retention)
    training: Training = Field(default_factory=Training)
    gate: Gate = Field(default_factory=Gate)
    access: Access = Field(default_factory=Access)
    audit: Audit = Field(default_factory=Audit)
    limits: Limits = Field(default_factory=Limits)
    processing: Processing = Field(default_factory=Processing)
    oversight: Oversight = Field(default_factory=Oversight)
    governance: Governance = Field(default_factory=Governance)
    notice: Notice = Field(default_factory=Notice)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    tracking: Tracking = Field(default_factory=Tracking)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        for name in self.columns:
            if not IDENTIFIER.match(name):
                raise ValueError(f"column name {name!r} must match {IDENTIFIER.pattern}")
            if name.lower() in RESERVED_COLUMNS:
                raise ValueError(f"column name {name!r} is reserved by the store")
        special = {self.use_case.id_column, self.target.column}
        if self.use_case.subject_column:
            special.add(self.use_case.subject_column)
        for name in sorted(special):
            if not IDENTIFIER.match(name):
                raise ValueError(f"column name {name!r} must match {IDENTIFIER.pattern}")
            if name in self.columns:
                raise ValueError(
                    f"{name!r} is the id, subject or target column; do not list it in columns"
                )
        if len(special) != (3 if self.use_case.subject_column else 2):
            raise ValueError("id_column, subject_column and target.column must be distinct")
        for list_name in ("features", "personal", "protected", "display", "display_personal"):
            names: list[str] = getattr(self.fields, list_name)
            unknown = [n for n in names if n not in self.columns]
            if unknown:
                raise ValueError(f"fields.{list_name} names columns not in [columns]: {unknown}")
            if len(set(names)) != len(names):
                raise ValueError(f"fields.{list_name} lists a column twice")
        f = self.fields
        stray = [n for n in self.columns if n not in f.features and n not in f.personal]
        if stray:
            raise ValueError(f"columns that are neither features nor personal: {stray}")
        undisplayable = [n for n in f.display if n in f.personal and n not in f.display_personal]
        if undisplayable:
            raise ValueError(
                "fields.display shows personal columns not declared in display_personal: "
                f"{undisplayable}"
            )
        bad_dp = [n for n in f.display_personal if n not in f.personal]
        if bad_dp:
            raise ValueError(
                f"fields.display_personal names columns that are not personal: {bad_dp}"
            )
        self._check_actionable()
        return self

    def _check_actionable(self) -> None:
        favourable = self.notice.favourable
        if favourable and favourable not in self.target.classes:
            raise ValueError(f"notice.favourable: not a class of target.classes: {favourable!r}")
        for name, spec in self.notice.actionable.items():
            where = f"notice.actionable.{name}"
            if name not in self.fields.features:
                raise ValueError(f"{where}: not a feature (fields.features)")
            column = self.columns[name]
            if column.type not in ("int", "float", "category"):
                raise ValueError(f"{where}: only int, float and category features can be changed")
            if spec.levels is not None:
                if column.type != "category":
                    raise ValueError(f"{where}: levels are only for category features")
                unknown = [v for v in spec.levels if v not in (column.levels or [])]
                if unknown:
                    raise ValueError(f"{where}: levels not in the column's levels: {unknown}")
            numeric = column.type in ("int", "float")
            if not numeric and (spec.min, spec.max, spec.step) != (None, None, None):
                raise ValueError(f"{where}: min, max and step are only for int and float features")

    # ----------------------------------------------------------------- derived views
    @property
    def feature_only_columns(self) -> list[str]:
        """Columns stored in the case_features table (not personal)."""
        return [n for n in self.columns if n not in self.fields.personal]

    @property
    def personal_columns(self) -> list[str]:
        """Columns stored apart in the case_personal table."""
        return [n for n in self.columns if n in self.fields.personal]

    def roles_of(self, user: str) -> list[str]:
        return list(self.access.users.get(user, []))


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def parse_settings(data: dict[str, Any], source: str) -> Settings:
    """Validate a parsed TOML document; ``source`` names it in error messages."""
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{source}: {_format_location(tuple(err['loc']))}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def load_settings(path: str | Path) -> Settings:
    """Read and validate hilt.toml. Raises ConfigError naming the file and the key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config file ({type(e).__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse_settings(data, str(p))
