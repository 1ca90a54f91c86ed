"""The training view of the store as of an audit seq, exported to Parquet.

Labels and their provenance:
- ``original``: the label that came with the case at ingest (seed label);
- ``reviewer-accepted``: a reviewer accepted the model's label unchanged;
- ``reviewer-corrected``: a reviewer overrode it.
A reviewer's live final decision (not undone) as of the seq wins over the original label.

The holdout is fixed at workspace creation: a case labelled at ingest is in the holdout
when a salted hash of its id falls below ``training.holdout_fraction`` (the salt is made
at ``hilt init``). Holdout rows keep their original label and never enter training, so
feedback can never leak into the measure of quality.

Reviewer-accepted labels are capped (``training.max_accepted_share``) so that a model
cannot simply confirm itself (EU AI Act Art. 15(4)); the ones kept are chosen by the same
salted hash, so the choice is deterministic.

Double review (``double_review``): a double-review case takes a label only once settled,
by two reviews that agree or by a lead's adjudication (label source
``reviewer-corrected``; the adjudication is the latest decision, so it wins).
"""

from __future__ import annotations

from hilt.pipelines.config import Settings
from hilt.pipelines.store import double_review
from hilt.pipelines.store.schema import quote

_HASH = "('0x' || left(sha256($salt || c.case_id), 8))::BIGINT"
HASH_SPACE = 2**32


def wanted_columns(settings: Settings) -> list[str]:
    """The configured columns a snapshot holds: the features, then the protected attributes."""
    return list(dict.fromkeys([*settings.fields.features, *settings.fields.protected]))


#: Columns of ``snapshot_sql`` that only serve to open the personal data; dropped after.
SEALED_COLUMNS = ("subject_ref", "case_ingest_seq", "sealed")


def snapshot_sql(settings: Settings) -> str:
    """Rows of the training view; parameters: $as_of, $salt, $holdout_cut.

    Personal columns come out sealed (``sealed`` with ``subject_ref`` and
    ``case_ingest_seq`` to open it); the store opens them and applies rectifications.
    Cases whose data was removed, and subjects who restricted or objected to processing,
    are left out whatever the seq: a snapshot is made now, under today's rights.
    """
    wanted = [n for n in wanted_columns(settings) if n not in settings.fields.personal]
    cols = "".join(f", f.{quote(n)}" for n in wanted)
    unsettled = double_review.unsettled_sql(
        "dec",
        "(SELECT * FROM contests WHERE seq <= $as_of)",
        settings.oversight.double_review_share,
        salt_sql="$salt",
    )
    return f"""
WITH dec AS (
    SELECT * FROM decisions WHERE seq <= $as_of
), final AS (
    SELECT case_id, arg_max(final_label, seq) AS label, arg_max(action, seq) AS action,
           max(seq) AS label_seq
    FROM dec
    WHERE action IN ('accept', 'override', 'adjudicate')
      AND decision_id NOT IN (SELECT undo_of FROM dec WHERE action = 'undo'
                              AND undo_of IS NOT NULL)
      AND case_id NOT IN ({unsettled})
    GROUP BY case_id
), base AS (
    SELECT c.case_id{cols},
           c.subject_ref, c.ingest_seq AS case_ingest_seq, p.sealed,
           s.label AS seed_label, s.ingest_seq,
           fi.label AS review_label, fi.action, fi.label_seq,
           {_HASH} AS bucket
    FROM cases c
    JOIN case_features f USING (case_id)
    JOIN case_personal p USING (case_id)
    LEFT JOIN seed_labels s ON s.case_id = c.case_id AND s.ingest_seq <= $as_of
    LEFT JOIN final fi ON fi.case_id = c.case_id
    WHERE c.ingest_seq <= $as_of
      AND c.removed_seq IS NULL
      AND c.subject_ref NOT IN (SELECT subject_ref FROM restrictions WHERE lifted_seq IS NULL)
), labelled AS (
    SELECT *,
        seed_label IS NOT NULL AND bucket < $holdout_cut AS in_holdout
    FROM base
    WHERE seed_label IS NOT NULL OR review_label IS NOT NULL
)
SELECT * EXCLUDE (seed_label, review_label, action, label_seq, ingest_seq, in_holdout),
    CASE WHEN in_holdout THEN seed_label ELSE coalesce(review_label, seed_label) END AS label,
    CASE
        WHEN in_holdout OR review_label IS NULL THEN 'original'
        WHEN action = 'accept' THEN 'reviewer-accepted'
        ELSE 'reviewer-corrected'
    END AS label_source,
    CASE WHEN in_holdout THEN 'holdout' ELSE 'train' END AS split,
    CASE WHEN in_holdout OR review_label IS NULL THEN ingest_seq ELSE label_seq END
        AS label_seq
FROM labelled
"""
