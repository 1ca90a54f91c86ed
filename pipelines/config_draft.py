"""A first hilt.toml drafted from a case file (`hilt config draft FILE --target COL`).

Every column of the file is read whole (a range or a level list drawn from a sample would
refuse the rest of the same file) and guessed: its type (int, float, bool, category with at
most ``max_levels`` levels, else string), whether it may be empty, its range; whether its
name or its values look like personal data (age, sex, birth, name, address, postcode,
nationality, email, phone, IBAN …), and whether it is a protected attribute. Every guess is
written as a comment beside it, so the person who owns the data can check each one. The
draft passes `hilt init` unchanged and ingests the file it was drafted from.

Only the draft's text is produced here; nothing is written to a workspace. The comments name
counts and kinds, never a value of a column that looks personal (the draft is read by many).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from hilt.pipelines.config import (
    IDENTIFIER,
    RESERVED_COLUMNS,
    Gate,
    Monitoring,
    Oversight,
    Retention,
    Review,
    Training,
    parse_settings,
)
from hilt.pipelines.errors import InputError
from hilt.pipelines.tables import read_table

#: Default cap on the levels of a category; a text column with more is a string.
MAX_LEVELS = 30
#: An integer column with at most this many distinct values is drafted as a code (category).
MAX_CODE_LEVELS = 10
#: A target with more classes than this is not a classification target.
MAX_CLASSES = 20
#: Share of a text column's values that must match a pattern for the column to be flagged.
PATTERN_SHARE = 0.5

_TRUE_FALSE = {"true", "false", "yes", "no"}


def _vocabulary(text: str) -> dict[str, str]:
    """``"word=what; word=what"`` → {word: what} (a list of words, not column names)."""
    return dict(item.strip().split("=", 1) for item in text.split(";") if item.strip())


#: Name parts of personal data that are also protected attributes (EU Charter Art. 21,
#: GDPR Art. 9): subgroup metrics and the promotion gate use them, the model does not.
_PROTECTED_WORDS = _vocabulary(
    "age=age; sex=sex; gender=gender; birth=date or place of birth; dob=date of birth; "
    "born=date or place of birth; nationality=nationality; citizenship=citizenship; "
    "ethnic=ethnic origin; ethnicity=ethnic origin; race=racial origin; "
    "religion=religion; disability=disability; marital=marital status"
)
#: Name parts of other personal data (identifying or contact data).
_PERSONAL_WORDS = _vocabulary(
    "name=a name; firstname=a name; surname=a name; lastname=a name; address=an address; "
    "street=an address; city=an address; postcode=a postcode; postal=a postcode; "
    "zip=a postcode; email=an email address; mail=an email address; "
    "phone=a phone number; mobile=a phone number; telephone=a phone number; "
    "iban=a bank account; account_number=a bank account; ssn=a national id number; "
    "passport=a passport number; health=health data"
)
_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email addresses", re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")),
    ("IBANs", re.compile(r"^[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}$")),
    ("phone numbers", re.compile(r"^\+?[0-9][0-9 ()./-]{5,18}[0-9]$")),
)
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4})([ T].*)?$")


@dataclass
class ColumnDraft:
    """One drafted column: its settings and the guesses to comment on."""

    name: str
    spec: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    personal: bool = False
    protected: bool = False


def _words(name: str) -> list[str]:
    """A column name's parts: ``dateOfBirth`` / ``date_of_birth`` → date, of, birth."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _name_flags(name: str) -> tuple[str | None, str | None]:
    """(protected reason, personal reason) from a column's name."""
    words = _words(name)
    joined = "_".join(words)
    for word, what in _PROTECTED_WORDS.items():
        if word in words or (len(word) > 4 and word in joined):
            return what, None
    for word, what in _PERSONAL_WORDS.items():
        if word in words or (len(word) > 4 and word in joined):
            return None, what
    return None, None


def _text(s: pl.Series) -> pl.Series:
    """A column as the store's validation sees it: text, stripped, empty → missing."""
    t = s.str.strip_chars() if s.dtype == pl.String else s.cast(pl.String)
    if s.dtype == pl.Boolean:
        t = t.str.to_lowercase()
    return t.replace("", None).alias(s.name)


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _bounds(values: pl.Series) -> tuple[float, float]:
    """The smallest and the largest of numbers without a missing value."""
    low, high = (
        pl.DataFrame({"x": values.cast(pl.Float64)})
        .select(pl.col("x").min(), pl.col("x").max().alias("y"))
        .row(0)
    )
    return float(low), float(high)


def _share(values: pl.Series, pattern: re.Pattern[str]) -> float:
    """The share of ``values`` (none missing) that match ``pattern``."""
    return int(values.str.contains(pattern.pattern).sum()) / max(1, values.len())


def draft_column(name: str, raw: pl.Series, max_levels: int) -> ColumnDraft:
    """The settings of one column, guessed from all its values."""
    text = _text(raw)
    present = text.drop_nulls()
    n, missing = text.len(), text.null_count()
    draft = ColumnDraft(name, {})
    spec = draft.spec
    if missing:
        spec["nullable"] = True
        draft.notes.append(f"nullable: {missing} of {n} rows are empty")
    if present.len() == 0:
        spec["type"] = "string"
        draft.notes.append("string: every value is empty, so the type cannot be told")
        _flag(draft, raw_is_text=True, values=present)
        return _ordered(draft)
    distinct = present.unique()
    as_int = present.cast(pl.Int64, strict=False) if raw.dtype.is_float() is False else None
    as_float = present.cast(pl.Float64, strict=False)
    if as_int is not None and as_int.null_count() == 0:
        low, high = _bounds(as_int)
        if distinct.len() <= min(MAX_CODE_LEVELS, max_levels) and low >= 0:
            levels = sorted(distinct.to_list(), key=lambda v: (int(v), v))
            spec["type"] = "category"
            spec["levels"] = levels
            draft.notes.append(
                f"category: whole numbers with only {len(levels)} distinct values, read as "
                "codes; make it int if their order or size matters"
            )
        else:
            spec["type"] = "int"
            spec["min"], spec["max"] = int(low), int(high)
            draft.notes.append("int: every value is a whole number; min and max as observed")
    elif as_float.null_count() == 0 and bool(as_float.is_finite().all()):
        spec["type"] = "float"
        low, high = _bounds(as_float)
        spec["min"], spec["max"] = _number(low), _number(high)
        draft.notes.append("float: every value is a number; min and max as observed")
    elif set(present.str.to_lowercase().unique().to_list()) <= _TRUE_FALSE:
        spec["type"] = "bool"
        draft.notes.append("bool: every value is true/false or yes/no")
    elif distinct.len() <= max_levels and distinct.len() * 2 <= present.len():
        spec["type"] = "category"
        spec["levels"] = sorted(distinct.to_list())
        draft.notes.append(f"category: {distinct.len()} distinct values (at most {max_levels})")
    else:
        spec["type"] = "string"
        longest = int(_bounds(present.str.len_chars())[1])
        if longest > 200:
            spec["max_length"] = min(100_000, longest)
        why = (
            f"{distinct.len()} distinct values (more than {max_levels})"
            if distinct.len() > max_levels
            else "almost every value differs"
        )
        draft.notes.append(f"string: {why}, read as free text")
        if _share(present, _DATE) >= PATTERN_SHARE:
            draft.notes.append("looks like dates: kept as text (hilt has no date type)")
    _flag(draft, raw_is_text=spec["type"] == "string", values=present)
    return _ordered(draft)


def _flag(draft: ColumnDraft, *, raw_is_text: bool, values: pl.Series) -> None:
    protected, personal = _name_flags(draft.name)
    if protected is not None:
        draft.personal = True
        draft.notes.append(f"personal: the name suggests {protected}")
        if draft.spec["type"] != "string":
            draft.protected = True
            draft.notes.append("protected: subgroup metrics and the gate, never a model input")
    elif personal is not None:
        draft.personal = True
        draft.notes.append(f"personal: the name suggests {personal}")
    if raw_is_text and values.len():
        for what, pattern in _VALUE_PATTERNS:
            share = _share(values, pattern)
            if share >= PATTERN_SHARE:
                draft.personal = True
                draft.notes.append(f"personal: {share:.0%} of the values look like {what}")
                break
    if draft.spec["type"] == "string" and not draft.personal:
        draft.personal = True
        draft.notes.append(
            "personal: a text column is no model input; kept sealed as personal data "
            "(leave it out of the file if nobody needs it)"
        )


def _ordered(draft: ColumnDraft) -> ColumnDraft:
    order = ("type", "levels", "min", "max", "max_length", "nullable")
    draft.spec = {k: draft.spec[k] for k in order if k in draft.spec}
    return draft


@dataclass(frozen=True)
class TargetDraft:
    column: str
    classes: list[str]
    positive: str
    notes: list[str]


def draft_target(raw: pl.Series) -> TargetDraft:
    text = _text(raw)
    if raw.dtype.is_float():
        text = text.str.replace(r"\.0$", "")
    counts = text.drop_nulls().value_counts(sort=True)
    classes = [str(c) for c in counts[text.name].to_list()]
    if len(classes) < 2:
        raise InputError(f"target column {raw.name!r}: fewer than two classes")
    if len(classes) > MAX_CLASSES:
        raise InputError(
            f"target column {raw.name!r}: {len(classes)} distinct values; hilt needs a "
            f"classification target (at most {MAX_CLASSES} classes)"
        )
    lowered = {c.lower(): c for c in classes}
    positive = next(
        (lowered[c] for c in ("1", "true", "yes", "good", "positive") if c in lowered),
        classes[-1],
    )
    notes = [
        f"{len(classes)} classes; positive (the class the model's score is the probability "
        f"of) guessed as {positive!r}: check it",
    ]
    unlabelled = text.null_count()
    if unlabelled:
        notes.append(f"{unlabelled} rows have no label (cases for review)")
    ordered = [positive, *sorted(c for c in classes if c != positive)]
    return TargetDraft(str(raw.name), ordered, positive, notes)


def _is_id(s: pl.Series) -> bool:
    t = _text(s)
    return t.null_count() == 0 and t.n_unique() == t.len()


def _id_like(name: str) -> bool:
    low = name.lower()
    return low == "id" or low.endswith(("_id", "id"))


def _guess_ids(
    frame: pl.DataFrame, target: str, id_column: str | None, subject: str | None
) -> tuple[str, str | None, list[str]]:
    notes: list[str] = []
    names = [c for c in frame.columns if c != target]
    for given, what in ((id_column, "--id"), (subject, "--subject")):
        if given is not None and given not in frame.columns:
            raise InputError(f"{what} {given!r}: no such column in the file")
    if id_column is None:
        found = [c for c in names if _id_like(c) and c != subject and _is_id(frame[c])]
        if not found:
            raise InputError(
                "no column looks like a case id (a name ending in 'id', a value in every row, "
                "no value twice); name it with --id COLUMN"
            )
        id_column = found[0]
        notes.append(f"id_column guessed: the first unique column named like an id, {id_column}")
    elif not _is_id(frame[id_column]):
        raise InputError(f"--id {id_column!r}: the column is empty in some rows or repeats a value")
    if subject is None:
        people = ("subject", "applicant", "customer", "client", "person", "member", "user")
        found = [
            c
            for c in names
            if c != id_column
            and _id_like(c)
            and any(p in c.lower() for p in people)
            and _text(frame[c]).null_count() == 0
        ]
        if found:
            subject = found[0]
            notes.append(f"subject_column guessed: {subject} (an id named after a person)")
        else:
            notes.append("no subject column: every case is its own subject (--subject COLUMN)")
    return id_column, subject, notes


@dataclass(frozen=True)
class Draft:
    """A drafted hilt.toml: its text and what it decided."""

    text: str
    id_column: str
    subject_column: str | None
    target: TargetDraft
    columns: list[ColumnDraft]
    rows: int
    id_notes: list[str]

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if not c.personal]

    @property
    def personal(self) -> list[str]:
        return [c.name for c in self.columns if c.personal]

    @property
    def protected(self) -> list[str]:
        return [c.name for c in self.columns if c.protected]


def _toml(value: Any) -> str:
    """A TOML value (JSON's strings, numbers, booleans and arrays are TOML's)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _inline(spec: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in spec.items()) + " }"


def _defaults(section: str, values: dict[str, Any], comment: str) -> list[str]:
    lines = [f"[{section}]", f"# {comment}"]
    lines += [f"{k} = {_toml(v)}" for k, v in values.items() if v is not None]
    return [*lines, ""]


_USERS = {
    "reviewer1": ["reviewer"],
    "lead1": ["lead", "reviewer"],
    "lead2": ["lead"],
    "scientist1": ["data-scientist"],
    "auditor1": ["auditor"],
    "dpo1": ["dpo"],
}


def _render(name: str, source: str, d: Draft) -> str:
    out = [
        f"# hilt.toml drafted by `hilt config draft` from {source} ({d.rows} rows).",
        "# Every guess is commented: check each one before `hilt init`. No value of a free-text",
        "# column is written here (the levels of a category and a number's range are).",
        "",
        "[use_case]",
        f"name = {_toml(name)}",
        'description = "(what is decided, about whom)"',
        'purpose = "(the intended purpose, as stated in the technical documentation)"',
        f"id_column = {_toml(d.id_column)}",
    ]
    if d.subject_column is not None:
        out.append(f"subject_column = {_toml(d.subject_column)}")
    out += [f"# {note}" for note in d.id_notes]
    t = d.target
    out += ["", "[target]", f"column = {_toml(t.column)}", *(f"# {n}" for n in t.notes)]
    out += [f"classes = {_toml(t.classes)}", f"positive = {_toml(t.positive)}", "", "[columns]"]
    for c in d.columns:
        out += [f"# {c.name}: {note}" for note in c.notes]
        out.append(f"{c.name} = {_inline(c.spec)}")
    out += [
        "",
        "[fields]",
        "# Model inputs: every column that does not look personal and is no free text.",
        f"features = {_toml(d.features)}",
        "# Personal data: stored apart from the features, sealed per subject, erasable.",
        f"personal = {_toml(d.personal)}",
        "# Protected attributes: subgroup metrics and the promotion gate's maximum gap.",
        f"protected = {_toml(d.protected)}",
        "# What a reviewer sees, in this order (data minimisation): the features.",
        f"display = {_toml(d.features)}",
        "",
    ]
    review = Review(reason_codes={"other": "Other (explain in the comment)"}).model_dump()
    del review["reason_codes"]
    out += _defaults("review", review, "Human review: hilt's defaults.")
    out += [
        "[review.reason_codes]",
        "# Why a reviewer overrides the model: code = explanation shown to the reviewer.",
        '"data-error" = "The case data contain an error"',
        '"policy-exception" = "Policy requires a different outcome"',
        'other = "Other (explain in the comment)"',
        "",
    ]
    out += _defaults("training", Training().model_dump(), "Training data: hilt's defaults.")
    out += _defaults("gate", Gate().model_dump(), "The promotion gate: hilt's defaults.")
    out += _defaults(
        "oversight", Oversight().model_dump(), "Oversight of the reviewers: hilt's defaults."
    )
    out += _defaults(
        "monitoring", Monitoring().model_dump(), "Post-market monitoring: hilt's defaults."
    )
    out += _defaults("retention", Retention().model_dump(), "Retention in days: hilt's defaults.")
    out += [
        "[access]",
        "# Placeholder users: replace them with your people's logins and roles.",
        '# local_user = "lead1"   # single-person mode: who the dashboards act as',
        "",
        "[access.users]",
        *(f"{user} = {_toml(roles)}" for user, roles in _USERS.items()),
        "",
    ]
    return "\n".join(out)


def draft_config(
    path: str | Path,
    *,
    target: str,
    id_column: str | None = None,
    subject: str | None = None,
    max_levels: int = MAX_LEVELS,
) -> Draft:
    """Draft hilt.toml for the cases in ``path`` (.csv or .parquet). Raises InputError when
    the file cannot make a use case (no such target, an id that repeats, a column name that
    cannot be an SQL identifier, no column left to be a model input)."""
    if not 2 <= max_levels <= 1000:
        raise InputError("--max-levels must lie between 2 and 1000")
    source = Path(path)
    frame = read_table(source)
    if frame.height == 0:
        raise InputError(f"{source}: no rows")
    if target not in frame.columns:
        raise InputError(f"--target {target!r}: no such column in the file")
    dupes = sorted({c for c in frame.columns if frame.columns.count(c) > 1})
    if dupes:
        raise InputError(f"{source}: duplicate column names {dupes}")
    id_col, subject_col, id_notes = _guess_ids(frame, target, id_column, subject)
    if subject_col == id_col:
        raise InputError("--id and --subject name the same column")
    special = {id_col, target, *([subject_col] if subject_col else [])}
    bad = [c for c in frame.columns if not IDENTIFIER.match(c)]
    reserved = [c for c in frame.columns if c not in special and c.lower() in RESERVED_COLUMNS]
    if bad or reserved:
        problems = []
        if bad:
            problems.append(f"names that are not plain identifiers (letters, digits, _): {bad}")
        if reserved:
            problems.append(f"names the store keeps for itself: {reserved}")
        raise InputError(f"{source}: rename these columns in the file: " + "; ".join(problems))
    columns = [draft_column(c, frame[c], max_levels) for c in frame.columns if c not in special]
    if not columns or all(c.personal for c in columns):
        raise InputError(
            f"{source}: no column is left as a model input (every column besides the id, "
            "subject and target looks personal or is free text)"
        )
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", source.stem).strip("-")[:80] or "use-case"
    draft = Draft(
        "", id_col, subject_col, draft_target(frame[target]), columns, frame.height, id_notes
    )
    text = _render(name, source.name, draft) + "\n"
    # A draft that does not load is a bug of this module, not the user's: fail loudly.
    parse_settings(tomllib.loads(text), "the drafted hilt.toml")
    return replace(draft, text=text)
