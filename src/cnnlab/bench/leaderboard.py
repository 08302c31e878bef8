"""The leaderboard: one SQLite row per measurement, safe to write from many processes at once.

The database lives in the user's data directory by default (:func:`default_db_path`). It is opened in
WAL mode with a busy timeout, every write is one ``BEGIN IMMEDIATE`` transaction, and the schema
version is kept in ``PRAGMA user_version`` so a newer cnnlab can migrate an older file (and an older
cnnlab refuses a newer file instead of misreading it).

>>> import tempfile, os
>>> board = Leaderboard(os.path.join(tempfile.mkdtemp(), "lb.sqlite"))
>>> _ = board.record({"model": "fastnet", "dataset": "fashion-mnist", "backend": "ort", "accuracy": 0.9,
...                   "latency_median_ms": 0.2, "machine": "abc123"})
>>> [(r["model"], r["backend"]) for r in board.rows(model="fastnet")]
[('fastnet', 'ort')]
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "TASK_ORDER",
    "TASK_SCORES",
    "Leaderboard",
    "default_db_path",
    "pareto_front",
    "row_task",
    "row_value",
]

SCHEMA_VERSION = 4  # 2 added input_size, test_images, data_sha256 (what was measured); 3 task; 4 init_from_sha256
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another process's transaction before giving up

# (name, SQL type, what it holds); the order is the order of rows() and of every export.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "INTEGER PRIMARY KEY AUTOINCREMENT", "row number"),
    ("model", "TEXT NOT NULL", "model name (registered name or spec)"),
    ("dataset", "TEXT", "dataset whose test split gave the accuracy; null when speed only"),
    ("task", "TEXT", "classification | segmentation | reconstruction: what accuracy and metrics measure"),
    ("backend", "TEXT NOT NULL", "eager | channels_last | bf16 | compile | ort | ort-int8"),
    ("accuracy", "REAL", "test accuracy (segmentation: pixel), 0..1, whole test split; null: reconstruction, speed"),
    ("test_images", "INTEGER", "images of the test split that gave the accuracy; null when speed only"),
    ("data_sha256", "TEXT", "sha256 of those test images and their targets; null when speed only"),
    ("input_size", "TEXT", "C x H x W of one input image, e.g. 1x28x28"),
    ("latency_median_ms", "REAL", "median latency of one batch of batch_size, milliseconds"),
    ("latency_p90_ms", "REAL", "90th percentile latency, milliseconds"),
    ("latency_n", "INTEGER", "number of timed repetitions (after warm-up)"),
    ("batch_size", "INTEGER", "batch size of the latency measurement (the seed's rule: 4)"),
    ("throughput", "REAL", "images per second at throughput_batch"),
    ("throughput_batch", "INTEGER", "batch size of the throughput measurement"),
    ("peak_memory_bytes", "INTEGER", "peak memory growth while the backend was prepared and run (RSS on CPU)"),
    ("threads", "INTEGER", "intra-op threads set for the measurement"),
    ("params", "INTEGER", "parameters, sum(p.numel())"),
    ("macs", "INTEGER", "multiply-adds of conv + linear layers for one image"),
    ("checkpoint_sha256", "TEXT", "sha256 of the verified weights file; null for an untrained model"),
    ("init_from_sha256", "TEXT", "sha256 of the weights a fine-tuned run (--init-from) started from; null: "
     "from scratch or untrained; 'unknown': the run does not record it and its source is gone"),
    ("metrics", "TEXT", "other task metrics as JSON (loss, mean IoU, ...)"),
    ("cnnlab_version", "TEXT", "cnnlab version"),
    ("torch_version", "TEXT", "torch version"),
    ("runtime_version", "TEXT", "version of the runtime that ran the backend (e.g. onnxruntime)"),
    ("machine", "TEXT NOT NULL", "hardware fingerprint id (see cnnlab.bench.fingerprint)"),
    ("cpu_model", "TEXT", "CPU model name"),
    ("cpu_count", "INTEGER", "logical CPU cores"),
    ("gpu", "TEXT", "GPU name or 'none'"),
    ("created_at", "TEXT NOT NULL", "UTC timestamp, ISO 8601"),
)
COLUMN_NAMES = tuple(name for name, _, _ in COLUMNS)
_REQUIRED = ("model", "backend", "machine")
_ADDED_IN = {2: ("test_images", "data_sha256", "input_size"), 3: ("task",), 4: ("init_from_sha256",)}  # version: added
_SORTS = {
    "accuracy": "accuracy DESC, latency_median_ms ASC",
    "speed": "latency_median_ms ASC, accuracy DESC",
}


class _Damaged(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` found damage; the message holds what it reported."""


def default_db_path() -> Path:
    """Where the leaderboard lives unless ``--db`` says otherwise.

    ``$CNNLAB_LEADERBOARD`` (a file) wins; then ``$CNNLAB_DATA_HOME/leaderboard.sqlite``; then
    ``$XDG_DATA_HOME/cnnlab/leaderboard.sqlite``; then ``~/.local/share/cnnlab/leaderboard.sqlite``.
    """
    if os.environ.get("CNNLAB_LEADERBOARD"):
        return Path(os.environ["CNNLAB_LEADERBOARD"]).expanduser()
    if os.environ.get("CNNLAB_DATA_HOME"):
        return Path(os.environ["CNNLAB_DATA_HOME"]).expanduser() / "leaderboard.sqlite"
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share").expanduser()
    return base / "cnnlab" / "leaderboard.sqlite"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Leaderboard:
    """The SQLite leaderboard at ``db_path`` (default :func:`default_db_path`), created on first write.

    Each method opens its own short connection, so one ``Leaderboard`` can be shared freely and many
    processes can record into the same file at once.
    """

    def __init__(self, db_path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(db_path).expanduser() if db_path is not None else default_db_path()
        if self.path.is_dir():
            raise ValueError(
                f"leaderboard database {str(self.path)!r} is a folder; --db takes the path of a database file. "
                f"Use e.g. --db {self.path / 'leaderboard.sqlite'}."
            )

    def open_for_writing(self) -> None:
        """Create the file and its schema now (if needed), so a bad ``--db`` fails before a long measurement."""
        self._connect(create=True).close()

    # ---------------------------------------------------------------------------------------------
    # connection and schema

    def _connect(self, *, create: bool, check: bool = True) -> sqlite3.Connection:
        if not create and not self.path.is_file():
            raise FileNotFoundError(
                f"leaderboard database {str(self.path)!r} does not exist yet; record a result first with "
                "`cnnlab bench RUN --record`, or pass the right file with --db PATH."
            )
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write below is one explicit BEGIN IMMEDIATE.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.OperationalError) as err:
            raise ValueError(
                f"leaderboard database {str(self.path)!r} cannot be created or opened ({err}). Pass a file in a "
                "folder you can write to with --db PATH."
            ) from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if check:
                self._check_sound(conn)  # before anything writes to it (WAL switch, schema, rows)
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # safe in WAL mode: a crash loses at most the last commit
            self._migrate(conn)
        except sqlite3.DatabaseError as err:
            conn.close()
            if isinstance(err, _Damaged):
                raise self._damaged(str(err)) from None
            raise ValueError(
                f"leaderboard database {str(self.path)!r} cannot be opened ({err}); it is not a cnnlab "
                "leaderboard or it is damaged. Pass another file with --db PATH, or move this one away."
            ) from None
        return conn

    @staticmethod
    def _check_sound(conn: sqlite3.Connection) -> None:
        # A damaged b-tree page can leave the header and schema readable: reads then fail half-way or
        # silently miss rows (a damaged index), and an INSERT can overwrite what is left of the rows.
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
        if problems != ["ok"]:
            raise _Damaged("; ".join(problems))

    def _damaged(self, detail: str) -> ValueError:
        detail = " ".join(detail.replace("*** in database main ***", "").split())
        return ValueError(
            f"leaderboard database {str(self.path)!r} is damaged (PRAGMA quick_check: {detail[:300]}); nothing "
            f"was written to it. Keep it as it is: `sqlite3 {self.path} .recover > rows.sql` rescues the rows "
            "that are left. Then move it away (a new file is created on the next --record), or pass another "
            "file with --db PATH."
        )

    def _query(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """``conn.execute(sql).fetchall()``; damage that only a full read meets is the readable error."""
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err)):
                raise
            raise self._damaged(str(err)) from None

    @staticmethod
    def _enable_wal(conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment of exclusive access; a process that races another one opening
        # the same new file can get SQLITE_BUSY without the busy handler, so retry for a while.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("could not switch the database to WAL mode (locked)")
            time.sleep(0.01)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"leaderboard database {str(self.path)!r} has schema version {version}, newer than this "
                f"cnnlab understands (version {SCHEMA_VERSION}); upgrade cnnlab or pass another file with --db."
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have created the schema meanwhile.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                if conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
                    raise ValueError(
                        f"{str(self.path)!r} is an SQLite database with tables but no cnnlab schema version; "
                        "it is not a cnnlab leaderboard. Pass another file with --db PATH."
                    )
                columns = ",\n  ".join(f"{name} {sql}" for name, sql, _ in COLUMNS)
                conn.execute(f"CREATE TABLE results (\n  {columns}\n)")
                conn.execute("CREATE INDEX results_machine_dataset ON results (machine, dataset)")
                conn.execute("CREATE INDEX results_model ON results (model)")
            elif version < SCHEMA_VERSION:
                # Older rows keep every value; the columns added since are null for them (not measured then).
                types = {name: sql for name, sql, _ in COLUMNS}
                for added in range(version + 1, SCHEMA_VERSION + 1):
                    for name in _ADDED_IN.get(added, ()):
                        conn.execute(f"ALTER TABLE results ADD COLUMN {name} {types[name]}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------------------------------------
    # writing

    def record(self, result: Mapping[str, Any]) -> int:
        """Insert one measurement (keys from :data:`COLUMNS`); returns its row id."""
        return self.record_many([result])[0]

    def record_many(self, results: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert several measurements in one transaction (all or none); returns their row ids."""
        prepared = [self._prepare(r) for r in results]
        conn = self._connect(create=True)
        ids: list[int] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for row in prepared:
                    names = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    cur = conn.execute(f"INSERT INTO results ({names}) VALUES ({marks})", list(row.values()))
                    ids.append(int(cur.lastrowid or 0))
                conn.execute("COMMIT")
            except BaseException as err:
                conn.execute("ROLLBACK")
                if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
                    raise self._damaged(str(err)) from None  # damage quick_check could not see
                raise
        finally:
            conn.close()
        return ids

    @staticmethod
    def _prepare(result: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(result) - set(COLUMN_NAMES))
        if unknown:
            raise ValueError(
                f"Leaderboard.record: unknown keys {unknown}; a row takes only {', '.join(COLUMN_NAMES[1:])}. "
                "Put other task metrics into the 'metrics' dict."
            )
        missing = [k for k in _REQUIRED if result.get(k) in (None, "")]
        if missing:
            raise ValueError(
                f"Leaderboard.record: a row needs {', '.join(_REQUIRED)}; missing {missing} in the row with "
                f"keys {sorted(result)}."
            )
        row = {k: v for k, v in result.items() if k != "id"}
        if isinstance(row.get("metrics"), Mapping):
            row["metrics"] = json.dumps(row["metrics"], sort_keys=True)
        row.setdefault("created_at", _utc_now())
        return row

    # ---------------------------------------------------------------------------------------------
    # reading

    def rows(
        self,
        model: object = None,
        dataset: object = None,
        *,
        machine: str | None = None,
        sort: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows as dicts (columns in :data:`COLUMNS` order), filtered by model, dataset and machine id prefix.

        ``sort`` is ``"accuracy"`` (best first, then fastest) or ``"speed"`` (fastest first); default:
        insertion order. Returns ``[]`` when the database does not exist yet.
        """
        if not self.path.is_file():
            return []
        where, params = [], []
        for column, value in (("model", model), ("dataset", dataset)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        if machine is not None:
            where.append("machine LIKE ?")
            params.append(machine.replace("%", "").replace("_", "") + "%")
        if sort is not None and sort not in _SORTS:
            raise ValueError(f"sort must be one of {sorted(_SORTS)}; received sort={sort!r}.")
        order = f"{_SORTS[sort]}, id" if sort else "id"
        sql = "SELECT * FROM results" + (f" WHERE {' AND '.join(where)}" if where else "") + f" ORDER BY {order}"
        conn = self._connect(create=False)
        try:
            fetched = self._query(conn, sql, params)
        finally:
            conn.close()
        out = []
        for r in fetched:
            row = {name: r[name] for name in COLUMN_NAMES}
            if row["metrics"]:
                row["metrics"] = json.loads(row["metrics"])
            out.append(row)
        return out

    def count(self) -> int:
        """Number of rows (0 when the database does not exist yet)."""
        if not self.path.is_file():
            return 0
        conn = self._connect(create=False)
        try:
            return int(self._query(conn, "SELECT count(*) FROM results")[0][0])
        finally:
            conn.close()

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for a sound file, else what is damaged."""
        if not self.path.is_file():
            raise FileNotFoundError(f"leaderboard database {str(self.path)!r} does not exist.")
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)  # no check, no writes
        try:
            return "; ".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall())
        except sqlite3.DatabaseError as err:
            return str(err)
        finally:
            conn.close()


def row_task(row: Mapping[str, Any]) -> str | None:
    """The row's task: its ``task`` column, or for rows recorded before schema 3 what its metrics show.

    >>> row_task({"task": None, "accuracy": None, "metrics": {"loss": 1.0, "mse": 1.0}})
    'reconstruction'
    """
    if row.get("task"):
        return str(row["task"])
    metrics = row.get("metrics") or {}
    if "mse" in metrics:
        return "reconstruction"
    if "mean_iou" in metrics:
        return "segmentation"
    return "classification" if row.get("accuracy") is not None else None  # None: an untrained model's speed row


# per task: its score columns (header, row key or metrics.KEY, format), what they mean, and whether lower is better
TASK_SCORES: dict[str | None, tuple[tuple[tuple[str, str, str], ...], str, bool]] = {
    "classification": ((("accuracy", "accuracy", ".4f"),), "accuracy = share of the test images classified right",
                       False),
    "segmentation": ((("pixel acc", "accuracy", ".4f"), ("mean IoU", "metrics.mean_iou", ".4f")),
                     "pixel acc = share of the test pixels classified right, mean IoU = intersection over union "
                     "averaged over the classes present; ranked by pixel acc", False),
    "reconstruction": ((("MSE", "metrics.mse", ".6f"),),
                       "MSE = mean squared error per pixel between output and input, normalised as the model sees "
                       "them; lower is better; a reconstruction has no accuracy", True),
    None: ((("accuracy", "accuracy", ".4f"),), "task not recorded: untrained models timed on random inputs (no "
           "score), recorded before leaderboard schema 3", False),
}  # fmt: skip
TASK_ORDER = ("classification", "segmentation", "reconstruction", None)


def row_value(row: Mapping[str, Any], key: str) -> Any:
    """A row's ``key``, or ``metrics.KEY`` from its metrics (a score column of :data:`TASK_SCORES`)."""
    if key.startswith("metrics."):
        return (row.get("metrics") or {}).get(key.removeprefix("metrics."))
    return row.get(key)


def pareto_front(
    rows: Sequence[Mapping[str, Any]],
    *,
    accuracy: str = "accuracy",
    latency: str = "latency_median_ms",
    group: Sequence[str] = ("machine", "dataset", "data_sha256", "input_size", "batch_size"),
) -> list[bool]:
    """For each row, whether it is on the accuracy/latency Pareto front of its group.

    A row is on the front when no row of the same ``group`` (machine, test data, input size and batch
    size: only those are comparable) is at least as accurate and at least as fast, and strictly better in
    one of the two.
    Rows without an accuracy or a latency are never on the front.

    >>> rows = [{"accuracy": 0.9, "latency_median_ms": 1.0}, {"accuracy": 0.8, "latency_median_ms": 2.0},
    ...         {"accuracy": 0.7, "latency_median_ms": 0.5}]
    >>> pareto_front(rows, group=())
    [True, False, True]
    """
    keys = [tuple(r.get(g) for g in group) for r in rows]
    flags = []
    for i, row in enumerate(rows):
        acc, lat = row.get(accuracy), row.get(latency)
        if acc is None or lat is None:
            flags.append(False)
            continue
        dominated = False
        for j, other in enumerate(rows):
            if j == i or keys[j] != keys[i]:
                continue
            o_acc, o_lat = other.get(accuracy), other.get(latency)
            if o_acc is None or o_lat is None:
                continue
            if o_acc >= acc and o_lat <= lat and (o_acc > acc or o_lat < lat):
                dominated = True
                break
        flags.append(not dominated)
    return flags
