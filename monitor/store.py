"""The monitor's durable state, behind one small class: SQLite by default, PostgreSQL in compose.

Everything is keyed so that writing the same record twice changes nothing: a prediction,
a shadow score and an outcome by ``application_id`` (a duplicate outcome is ignored, so it
never counts twice, and a batch replayed after a crash rewrites nothing), a window row by its
source ``topic/partition/offset``. An outcome whose prediction has not arrived is an outcome
row without a matching prediction row, also listed in ``unjoined_outcomes`` (so counting and
expiring the waiting ones never scans every joined outcome): it joins whenever the
prediction comes, which takes it off that list.

The outbox holds what a batch must still write to Kafka, with the offsets that close the
batch; ``monitor.loop`` explains why that makes the Kafka side exactly-once.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from monitor.errors import StoreError
from monitor.tables import (
    alert_state,
    feature_window,
    metadata,
    outbox,
    outbox_offsets,
    outcomes,
    personal_fields,
    predictions,
    shadow_scores,
    unjoined_outcomes,
)

Row = Mapping[str, Any]
_Convert = Callable[[Any], Any]
ScoredRows = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""(scores, thresholds), one per row."""


@dataclass(frozen=True, slots=True)
class PairedRows:
    """Applications with an outcome, scored by the champion and by the shadow challenger."""

    defaulted: npt.NDArray[np.bool_]
    champion: ScoredRows
    challenger: ScoredRows


PERSONAL_COLUMNS: Final = ("sex", "age", "marriage", "education")


@dataclass(frozen=True, slots=True)
class JoinedRows:
    """Predictions with an outcome, one entry per application, oldest outcome first."""

    defaulted: npt.NDArray[np.bool_]
    scores: npt.NDArray[np.float64]
    thresholds: npt.NDArray[np.float64]
    run_ids: list[str]
    personal: pd.DataFrame
    """``PERSONAL_COLUMNS`` by row, all NaN where the worker sent no personal fields."""
    paired: PairedRows | None = None
    """Those of the rows the ``pair`` given to ``joined`` scored, champion and challenger."""


class Store:
    """The database at ``url`` (any SQLAlchemy URL), its tables created if missing."""

    def __init__(self, url: str) -> None:
        try:
            self._engine = sa.create_engine(url)
            if self._engine.dialect.name == "sqlite":
                sa.event.listen(self._engine, "connect", _sqlite_durable_enough)
            waiting_listed = sa.inspect(self._engine).has_table(unjoined_outcomes.name)
            metadata.create_all(self._engine)
            with self._engine.begin() as connection:
                # create_all skips tables that exist: an index added since (the live
                # window's) is created on a database an older monitor made.
                for table in metadata.sorted_tables:
                    for index in table.indexes:
                        index.create(connection, checkfirst=True)
                if not waiting_listed:  # an older monitor's database: list its waiting ones once
                    StoreTransaction(connection).list_unjoined()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot open the monitor's database: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """One database transaction: committed when the block ends, rolled back on error."""
        try:
            with self._engine.begin() as connection:
                yield StoreTransaction(connection)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"the monitor's database failed: {exc}") from exc

    def close(self) -> None:
        self._engine.dispose()


class StoreTransaction:
    """The monitor's reads and writes inside one open transaction."""

    def __init__(self, connection: sa.Connection) -> None:
        self._db = connection

    def add_predictions(self, rows: Sequence[Row]) -> int:
        """Insert predictions not seen before; how many were new. Their outcomes, if they
        were waiting, are joined now."""
        before = self._db.execute(sa.select(sa.func.max(predictions.c.seq))).scalar() or 0
        added = self._insert_new(predictions, rows)
        if added:
            # The new ones are those past ``before``: no list of the batch's ids, which
            # SQLAlchemy renders as one parameter each (2,500 a batch) on every batch.
            new = sa.select(predictions.c.application_id).where(predictions.c.seq > before)
            waiting = unjoined_outcomes.c.application_id.in_(new.scalar_subquery())
            self._db.execute(sa.delete(unjoined_outcomes).where(waiting))
        return added

    def add_personal_fields(self, rows: Sequence[Row]) -> int:
        """Insert predictions' personal fields not seen before; how many were new."""
        return self._insert_new(personal_fields, rows)

    def add_shadow_scores(self, rows: Sequence[Row]) -> int:
        """Insert the challenger's scores not seen before; how many were new."""
        return self._insert_new(shadow_scores, rows)

    def add_outcomes(self, rows: Sequence[Row]) -> int:
        """Insert outcomes not seen before; how many were new (duplicates are ignored).
        Those whose prediction is not in yet are listed as waiting."""
        added = self._insert_new(outcomes, rows)
        if added:
            self.list_unjoined(arrived={row["received_at"] for row in rows})
        return added

    def list_unjoined(self, arrived: Set[datetime] | None = None) -> None:
        """List the outcomes without a prediction (that ``arrived`` at one of those times,
        or all) as waiting.

        Selected by arrival time, one or two values a batch, read by the arrival index,
        not by a list of the batch's ids to bind. An older outcome of the same arrival time
        changes nothing: one without a prediction is already listed (or was expired with
        its listing), one with a prediction is not waiting.
        """
        match = sa.exists().where(predictions.c.application_id == outcomes.c.application_id)
        query = sa.select(outcomes.c.application_id, outcomes.c.received_at).where(~match)
        if arrived is not None:
            query = query.where(outcomes.c.received_at.in_(arrived))
        # One statement: the listed rows never pass through Python.
        dialect = sqlite if self._db.dialect.name == "sqlite" else postgresql
        columns = ["application_id", "received_at"]
        listing = dialect.insert(unjoined_outcomes).from_select(columns, query)
        self._db.execute(listing.on_conflict_do_nothing())

    def add_feature_rows(self, rows: Mapping[str, Sequence[float]], keep: int) -> None:
        """Add application feature vectors by source position; keep only the last ``keep``."""
        values = [{"source": src, "vector": orjson.dumps(v).decode()} for src, v in rows.items()]
        self._insert_new(feature_window, values)
        newest = self._db.execute(sa.select(sa.func.max(feature_window.c.seq))).scalar() or 0
        self._db.execute(sa.delete(feature_window).where(feature_window.c.seq <= newest - keep))

    def window_features(self) -> npt.NDArray[np.float64]:
        """The window's feature vectors, one row each, oldest first."""
        query = sa.select(feature_window.c.vector).order_by(feature_window.c.seq)
        vectors = (vector for (vector,) in self._rows(query))
        # One JSON document for the whole window: a json.loads per row cost ~34 ms a measure
        # (cProfile of a 20,000-application burst, benchmarks/README.md finding 10).
        return np.array(orjson.loads(f"[{','.join(vectors)}]"), dtype=np.float64)

    def score_window(self, size: int) -> tuple[npt.NDArray[np.float64], str | None]:
        """The last ``size`` scores, and the run id of the newest prediction's model."""
        query = sa.select(predictions.c.score, predictions.c.model_run_id)
        rows = self._rows(query.order_by(predictions.c.seq.desc()).limit(size))
        return np.array([r[0] for r in rows], dtype=float), (rows[0][1] if rows else None)

    def joined(self, limit: int, pair: tuple[str, str] | None = None) -> JoinedRows:
        """The ``limit`` most recently arrived outcomes whose prediction is in, oldest first;
        with ``pair`` (champion version, challenger version), also those of them that the
        champion scored officially and the challenger in the shadow (``paired``).

        Read by the outcomes' arrival index and stopped at ``limit``: the cost is the
        window's, not the history's. The pairs come with the same read: a second one for
        the shadow comparison cost as much again (22 ms a 10,000-row window, finding 10).
        """
        personal = [personal_fields.c[name] for name in PERSONAL_COLUMNS]
        query = (
            sa.select(outcomes.c.defaulted, predictions.c.score, predictions.c.threshold,
                      predictions.c.model_run_id, *personal)
            .join(predictions, predictions.c.application_id == outcomes.c.application_id)
            .outerjoin(
                personal_fields, personal_fields.c.application_id == outcomes.c.application_id
            )
        )  # fmt: skip
        if pair is not None:
            shadow = shadow_scores.c
            scored_by_both = sa.and_(
                shadow.application_id == outcomes.c.application_id,
                shadow.champion_version == pair[0],
                shadow.model_version == pair[1],
                predictions.c.model_version == pair[0],
            )
            query = query.outerjoin(shadow_scores, scored_by_both)
            query = query.add_columns(shadow.score, shadow.threshold)
        rows = self._rows(_newest_first(query).limit(limit))[::-1]
        width = 4 + len(personal)
        columns = _columns(rows, width + (2 if pair else 0))
        defaulted, scores, thresholds, run_ids, *personal_values = columns[:width]
        window = JoinedRows(
            defaulted=np.array(defaulted, dtype=bool),
            scores=np.array(scores, dtype=float),
            thresholds=np.array(thresholds, dtype=float),
            run_ids=[str(run_id) for run_id in run_ids],
            personal=pd.DataFrame(
                dict(zip(PERSONAL_COLUMNS, personal_values, strict=True)),
                columns=list(PERSONAL_COLUMNS),
                dtype=float,
            ),
        )
        if pair is None:
            return window
        shadow_score, shadow_threshold = (np.array(c, dtype=float) for c in columns[width:])
        both = ~np.isnan(shadow_score)  # NULL: not scored by both
        paired = PairedRows(
            defaulted=window.defaulted[both],
            champion=(window.scores[both], window.thresholds[both]),
            challenger=(shadow_score[both], shadow_threshold[both]),
        )
        return dataclasses.replace(window, paired=paired)

    def newest_shadow_pair(self) -> tuple[str, str] | None:
        """(champion version, challenger version) of the newest shadow score; None if none."""
        query = sa.select(shadow_scores.c.champion_version, shadow_scores.c.model_version)
        row = self._db.execute(query.order_by(shadow_scores.c.seq.desc()).limit(1)).first()
        return (str(row[0]), str(row[1])) if row else None

    def paired(self, champion_version: str, challenger_version: str) -> PairedRows:
        """All the applications that ``champion_version`` scored officially,
        ``challenger_version`` in the shadow, and whose outcome is known, oldest outcome
        first (``joined`` gives those of the live window)."""
        shadow = shadow_scores
        query = (
            sa.select(
                outcomes.c.defaulted,
                predictions.c.score,
                predictions.c.threshold,
                shadow.c.score.label("shadow_score"),
                shadow.c.threshold.label("shadow_threshold"),
            )
            .join(predictions, predictions.c.application_id == outcomes.c.application_id)
            .join(shadow, shadow.c.application_id == outcomes.c.application_id)
        )
        versions = [
            predictions.c.model_version == champion_version,
            shadow.c.champion_version == champion_version,
            shadow.c.model_version == challenger_version,
        ]
        rows = self._rows(_newest_first(query.where(*versions)))[::-1]
        defaulted, champion, threshold, challenger, challenger_threshold = _columns(rows, 5)
        return PairedRows(
            defaulted=np.array(defaulted, dtype=bool),
            champion=(np.array(champion, dtype=float), np.array(threshold, dtype=float)),
            challenger=(
                np.array(challenger, dtype=float),
                np.array(challenger_threshold, dtype=float),
            ),
        )

    def expire_pending(self, received_before: datetime, keep: int) -> int:
        """Drop outcomes still without a prediction that arrived before ``received_before``,
        then the oldest beyond ``keep``; how many were dropped."""
        waiting = unjoined_outcomes.c
        stale = sa.select(waiting.application_id).where(waiting.received_at < received_before)
        excess = (
            sa.select(waiting.application_id)
            .order_by(waiting.received_at.desc(), waiting.application_id.desc())
            .offset(keep)
        )
        ids = {i for (i,) in self._db.execute(stale)} | {i for (i,) in self._db.execute(excess)}
        if ids:
            self._db.execute(sa.delete(outcomes).where(outcomes.c.application_id.in_(ids)))
            self._db.execute(sa.delete(unjoined_outcomes).where(waiting.application_id.in_(ids)))
        return len(ids)

    def pending_outcomes(self) -> int:
        """Outcomes kept while their prediction has not arrived."""
        query = sa.select(sa.func.count()).select_from(unjoined_outcomes)
        return int(self._db.execute(query).scalar() or 0)

    def alert_states(self) -> dict[str, bool]:
        """Subjects currently above their limit (True) or back below it (False)."""
        return {row.subject: row.above for row in self._db.execute(sa.select(alert_state))}

    def set_alert_states(self, states: Mapping[str, bool]) -> None:
        self._db.execute(sa.delete(alert_state).where(alert_state.c.subject.in_(list(states))))
        if states:
            self._db.execute(
                sa.insert(alert_state),
                [{"subject": s, "above": a} for s, a in states.items()],
            )

    def put_outbox(self, records: Sequence[str], offsets: Mapping[tuple[str, int], int]) -> None:
        """Replace the outbox with ``records`` (JSON text) and the offsets closing the batch."""
        self.clear_outbox()
        if records:
            self._db.execute(sa.insert(outbox), [{"record": r} for r in records])
        offset_rows = [
            {"topic": t, "partition": p, "next_offset": o} for (t, p), o in offsets.items()
        ]
        if offset_rows:
            self._db.execute(sa.insert(outbox_offsets), offset_rows)

    def pending_outbox(self) -> tuple[list[str], dict[tuple[str, int], int]]:
        """What a batch still has to write to Kafka, and the offsets that close it."""
        rows = self._db.execute(sa.select(outbox.c.record).order_by(outbox.c.seq))
        records = [str(row.record) for row in rows]
        offsets = {
            (str(r.topic), int(r.partition)): int(r.next_offset)
            for r in self._db.execute(sa.select(outbox_offsets))
        }
        return records, offsets

    def clear_outbox(self) -> None:
        self._db.execute(sa.delete(outbox))
        self._db.execute(sa.delete(outbox_offsets))

    def _rows(self, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """``query``'s rows as the driver returns them: plain tuples, no conversion (a
        boolean comes as 0 or 1 from SQLite). Building SQLAlchemy's row objects cost a
        microsecond a row, a third of a live measure's reads over a 10,000-row window
        (cProfile, benchmarks/README.md finding 10)."""
        result = self._db.execute(query)
        try:
            return list(result.cursor.fetchall())
        finally:
            result.close()

    def _insert_new(self, table: sa.Table, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        dialect = self._db.dialect
        if dialect.name != "sqlite":
            # PostgreSQL: SQLAlchemy's executemany batches the rows into a few statements
            # (insertmanyvalues), a round trip each; both drivers sum rowcount over it.
            statement = postgresql.insert(table).on_conflict_do_nothing()
            return int(self._db.execute(statement, list(rows)).rowcount)
        # SQLite: the driver's own executemany on tuples. SQLAlchemy's per-row parameter
        # handling was 13% of the monitor's time over a burst (py-spy, benchmarks/README.md
        # finding 10); only the columns that need a conversion (dates, booleans) get one.
        sql, keys, convert = _positional_insert(table, dialect, tuple(rows[0]))
        values = list(map(_values_of(keys), rows))
        if convert is not None:
            columns = zip(*values, strict=True)
            values = list(zip(*map(_converted, convert, columns), strict=True))
        # A skipped conflict is no row: rowcount, summed over the executemany, counts new ones.
        return int(self._db.exec_driver_sql(sql, values).rowcount)


# A checkpoint copies the log's pages into the database and syncs it. At SQLite's default
# (every 1,000 pages, 4 MB) that was nearly every batch: committing was 8% of the monitor's
# wall time under the benchmark's burst, 3% with checkpoints every 40 MB (py-spy --idle,
# benchmarks/README.md finding 10), a page rewritten by several batches copied once.
_CHECKPOINT_PAGES: Final = 10_000


def _sqlite_durable_enough(connection: Any, _record: Any) -> None:
    """Write-ahead log, synced at checkpoints rather than at every commit.

    A committed transaction is in the log once ``COMMIT`` returns, so it survives the
    process dying at any instant (kill -9 included: the operating system still holds the
    written pages), which is what the outbox and the keyed joins rely on. It does not
    survive the machine losing power before the next checkpoint: the database could come
    back a few batches older than Kafka's committed offsets; the issue asks for kill -9.
    The default (a rollback journal, the disk synced at every commit) copies each changed
    page to the journal first and waits on the disk twice a batch.
    """
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
    cursor.close()


@functools.lru_cache(maxsize=32)
def _positional_insert(
    table: sa.Table, dialect: sa.Dialect, keys: tuple[str, ...]
) -> tuple[str, tuple[str, ...], tuple[_Convert | None, ...] | None]:
    """SQLite's keyed insert of ``keys`` into ``table``: its SQL, the order of its
    parameters, and each one's conversion (None when no column needs one)."""
    compiled = (
        sqlite.insert(table)
        .on_conflict_do_nothing()
        .compile(dialect=dialect, column_keys=list(keys))
    )
    order = tuple(compiled.positiontup or ())
    convert = tuple(
        table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in order
    )
    return str(compiled), order, (convert if any(convert) else None)


def _values_of(keys: tuple[str, ...]) -> Callable[[Row], tuple[Any, ...]]:
    """A row's values under ``keys`` as one tuple, in C (``itemgetter`` of several keys)."""
    if len(keys) == 1:
        return lambda row: (row[keys[0]],)
    return operator.itemgetter(*keys)


def _converted(convert: _Convert | None, column: tuple[Any, ...]) -> Sequence[Any]:
    """``column``'s values converted, each distinct value once (a batch's outcomes share
    their arrival time)."""
    if convert is None:
        return column
    once = {value: convert(value) for value in set(column)}
    return [once[value] for value in column]


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    """``rows`` (of ``width`` values) as one tuple per column; ``width`` empty ones if none."""
    return list(zip(*rows, strict=True)) if rows else [()] * width


def _newest_first(query: sa.Select[Any]) -> sa.Select[Any]:
    """``query`` (joined to outcomes) in the order of ``ix_outcomes_arrival``, newest first;
    the application id breaks ties, so a replayed batch reads the same window."""
    return query.order_by(outcomes.c.received_at.desc(), outcomes.c.application_id.desc())
