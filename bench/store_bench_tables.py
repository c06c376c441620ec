"""The store benchmark's tables, built from its results as saved in JSON (so that a later
run of one section, say ``--sections million``, re-renders the tables of the earlier ones)."""

from __future__ import annotations

import itertools
from typing import Any

from bench.store_bench_report import Table

MB = 2**20
Results = dict[str, Any]


def _ratio(numerator: float | None, denominator: float | None) -> str | None:
    if numerator is None or not denominator:
        return None
    return f"{numerator / denominator:,.1f}x"


def _p(latencies: dict[str, Any] | None, kind: str, field: str) -> float | None:
    if not latencies or kind not in latencies:
        return None
    return float(latencies[kind][field])


def loading_table(size: str, runs: dict[str, Results | None]) -> Table:
    """Upsert rate, index build, memory and disk of each store."""
    table = Table(
        f"Loading {size} points x 384 (batches of 256; points/s inside upsert())",
        [
            "store",
            "upsert pts/s",
            "vs local",
            "index build s",
            "RSS growth MB",
            "RSS B/pt",
            "disk MB",
            "of which WAL MB",
            "disk B/pt",
        ],
    )
    local = runs.get("local")
    local_rate = _rate(local["loaded"]) if local else None
    for name, run in runs.items():
        if run is None:
            continue
        loaded = run["loaded"]
        points = loaded["points"]
        rate = _rate(loaded)
        build = run.get("build")
        build_s: str | float | None = None if build is None else build["seconds"]
        if build is not None and build["timed_out"]:
            build_s = "timed out"
        elif build is not None and build["error"]:
            build_s = "failed"
        table.add(
            name,
            round(rate),
            _ratio(rate, local_rate) if name != "local" else None,
            build_s,
            loaded["rss_growth_bytes"] / MB,
            round(loaded["rss_growth_bytes"] / points),
            loaded["disk_bytes"] / MB,
            loaded["wal_bytes"] / MB,
            round(loaded["disk_bytes"] / points),
        )
        if run.get("disk_indexed_bytes") is not None:
            rss = run["rss_after_index_bytes"]
            disk = run["disk_indexed_bytes"]
            table.add(
                f"{name}, indexed",
                None,
                None,
                None,
                rss / MB,
                round(rss / points),
                disk / MB,
                run["wal_indexed_bytes"] / MB,
                round(disk / points),
            )
    for name, run in runs.items():
        build = (run or {}).get("build") or {}
        if build.get("timed_out"):
            table.notes.append(f"{name}: the index build timed out: no HNSW measurements")
        if build.get("error"):
            table.notes.append(f"{name}: the index build failed: {build['error']}")
    table.notes.append(
        "RSS growth: this process's resident set after loading (or after the index swap) "
        "minus before; edge counts the shard's files mapped in"
    )
    return table


def _rate(loaded: dict[str, Any]) -> float:
    return float(loaded["points"]) / float(loaded["upsert_seconds"])


def query_table(title: str, runs: dict[str, dict[str, Any] | None]) -> Table:
    """p50/p99 per query kind for each (store, mode) column, and ratios between them."""
    columns = {name: latencies for name, latencies in runs.items() if latencies}
    headers = ["query"]
    for name, latencies in columns.items():
        calls = next(iter(latencies.values()))["calls"]
        headers += [f"{name} p50", f"{name} p99 (n={calls})"]
    names = list(columns)
    pairs = list(itertools.pairwise(names))
    if len(names) == 3:
        pairs.append((names[0], names[2]))
    headers += [f"{a} / {b}" for a, b in pairs]
    table = Table(title, headers)
    kinds = next(iter(columns.values())).keys() if columns else []
    for kind in kinds:
        cells: list[str | float | None] = [kind]
        for latencies in columns.values():
            cells += [_p(latencies, kind, "p50_ms"), _p(latencies, kind, "p99_ms")]
        for a, b in pairs:
            cells.append(_ratio(_p(columns[a], kind, "p50_ms"), _p(columns[b], kind, "p50_ms")))
        table.add(*cells)
    table.notes.append("milliseconds; ratios are of p50s measured in this run")
    return table


def duplicates_table(results: Results) -> Table:
    """The duplicate scan: full where it was run, extrapolated from a part elsewhere."""
    table = Table(
        "Duplicate scan (find_duplicate_groups, threshold 0.95, pages of 256)",
        ["store", "points scanned", "seconds", "whole collection s", "groups", "how"],
    )
    rows = [
        ("local", (results.get("local") or {}).get("duplicates_partial")),
        ("edge HNSW", (results.get("edge") or {}).get("duplicates_partial")),
        ("edge HNSW", (results.get("edge") or {}).get("duplicates_full")),
    ]
    for name, scan in rows:
        if scan is None:
            continue
        how = "EXTRAPOLATED from the points scanned" if scan["extrapolated"] else "measured"
        table.add(
            name,
            scan["scanned_points"],
            scan["seconds"],
            scan["extrapolated_seconds"],
            scan["groups"],
            how,
        )
    table.notes.append(
        "extrapolated rows run the scan's own steps (scroll a page with vectors, one "
        "query_batch per page) on the first points only, times points / scanned"
    )
    return table


def recall_table(results: Results) -> Table:
    """Recall@10 against numpy's exact answer for every data set and setting."""
    table = Table(
        "Recall@10 vs exact (numpy) and latency of the same queries",
        ["data set", "search", "m", "ef_construct", "hnsw_ef", "recall@10", "p50 ms", "p99 ms"],
    )
    edge = results.get("edge")
    if edge:
        recall = edge["exact_recall"]
        latency = recall["latency"]
        table.add(
            "clustered",
            "exact (no index)",
            None,
            None,
            None,
            f"{recall['recall']:.4f}",
            latency["p50_ms"],
            latency["p99_ms"],
        )
    for row in sweep_rows(results):
        table.add(
            row["dataset"],
            "HNSW",
            row["m"],
            row["ef_construct"],
            "unset" if row["hnsw_ef"] is None else row["hnsw_ef"],
            f"{row['recall']:.4f}",
            row["p50_ms"],
            row["p99_ms"],
        )
    if edge and edge.get("filtered_recall"):
        recall = edge["filtered_recall"]
        table.add(
            "clustered, brand filter",
            "HNSW + payload index",
            16,
            100,
            "unset",
            f"{recall['recall']:.4f}",
            recall["latency"]["p50_ms"],
            recall["latency"]["p99_ms"],
        )
    table.notes.append(
        "hnsw_ef unset: EdgeStore's default (hnsw_ef=None); Qdrant then searches with "
        "ef_construct. Builds: " + builds_note(results)
    )
    return table


def sweep_rows(results: Results) -> list[dict[str, Any]]:
    """Every HNSW recall row: clustered (main store and sweep), random, real."""
    rows: list[dict[str, Any]] = []
    rows += (results.get("edge") or {}).get("sweep", [])
    rows += results.get("sweep", [])
    rows += results.get("random", [])
    rows += (results.get("real") or {}).get("rows", [])
    return rows


def builds_note(results: Results) -> str:
    """Index build seconds per data set and setting."""
    seen: dict[tuple[str, int, int], float | None] = {}
    for row in sweep_rows(results):
        seen[(row["dataset"], row["m"], row["ef_construct"])] = row["build_seconds"]
    return "; ".join(
        f"{dataset} m={m}/efc={efc} {'-' if s is None else f'{s:.0f} s'}"
        for (dataset, m, efc), s in seen.items()
    )


def recommendation(results: Results, target: float) -> tuple[dict[str, Any] | None, str]:
    """The smallest (m, ef_construct, hnsw_ef) reaching ``target`` on clustered and real."""
    by_setting: dict[tuple[int, int, int | None], dict[str, dict[str, Any]]] = {}
    for row in sweep_rows(results):
        kind = row["dataset"].split(" ")[0]
        key = (row["m"], row["ef_construct"], row["hnsw_ef"])
        by_setting.setdefault(key, {})[kind] = row
    needed = {"clustered", "real"}
    candidates = [
        (key, rows)
        for key, rows in by_setting.items()
        if needed <= rows.keys() and all(rows[k]["recall"] >= target for k in needed)
    ]
    if not candidates:
        return None, f"no setting measured reached recall@10 >= {target} on clustered and real"

    def cost(item: tuple[tuple[int, int, int | None], dict[str, Any]]) -> tuple[int, int, int]:
        (m, efc, ef), _ = item
        return (m, efc, efc if ef is None else ef)

    (m, efc, ef), rows = min(candidates, key=cost)
    chosen = {
        "m": m,
        "ef_construct": efc,
        "hnsw_ef": ef,
        "recall": {kind: row["recall"] for kind, row in rows.items()},
        "p50_ms": {kind: row["p50_ms"] for kind, row in rows.items()},
    }
    recalls = ", ".join(f"{kind} {rows[kind]['recall']:.4f}" for kind in sorted(needed))
    ef_text = "unset (= ef_construct)" if ef is None else str(ef)
    text = (
        f"smallest setting with recall@10 >= {target} on clustered and real embeddings: "
        f"m={m}, ef_construct={efc}, hnsw_ef={ef_text} (recall@10 {recalls}"
    )
    if "random" in rows:
        text += f"; random unit vectors, not tuned for: {rows['random']['recall']:.4f}"
    text += ")"
    return chosen, text
