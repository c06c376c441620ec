"""The embedded vector store: Qdrant's engine as a library (EdgeStore) vs qdrant-client's
local mode (QdrantStore in a folder), at 100,000 and 1,000,000 points of 384 dimensions.

Run with `python -m bench.store_bench` (part of `make bench`; `--quick` for 10k points in a
minute or two, `--million` adds the 1M run). In one run, on the same synthetic catalog
(``bench.store_bench_data``: 2,000 clusters of products of ~4 images, brand/category/product
payloads):

- loading: upsert points/s in batches of 256, RSS growth, disk per point; the index build;
- the query suite (similar by id, by vector, filtered by brand, group by product_id, facet
  brand, count with a filter): p50/p99 on local mode (few calls: it scans in Python), on the
  engine before its index (exact) and after (HNSW), and the ratios between them;
- the duplicate scan at 0.95: the whole collection on the engine, and the first points on
  local mode, extrapolated (and labelled so);
- recall@10 of HNSW against numpy's exact answer on the clustered set (m 16/32, ef_construct
  100/200, hnsw_ef unset/64/128/256), random unit vectors (the worst case, default setting) and
  real embeddings of the benchmark photos (``bench.store_bench_real``), and the smallest
  setting that reaches recall@10 >= 0.98 on clustered and real;
- with ``--million``: loading, the query suite and recall at 1,000,000 points, the engine
  only; the index build has a timeout, and exact latencies are measured before it starts.

The 2-core machine is shared, so every comparison is a ratio within the run. Results go to
``bench/results/store_bench.json`` and ``.md``, rewritten after every section; a run of some
sections (``--sections million``) keeps the other sections' results of an earlier run with
the same plan.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.store_bench_data import Catalog, catalog_of, clustered_catalog, random_catalog
from bench.store_bench_real import real_embeddings
from bench.store_bench_report import Table
from bench.store_bench_sections import run_edge, run_local, run_sweep
from bench.store_bench_tables import (
    duplicates_table,
    loading_table,
    query_table,
    recall_table,
    recommendation,
    sweep_rows,
)
from ingest.store.edge_collections import DEFAULT_HNSW, HnswParams

SECTIONS = ("edge", "local", "sweep", "random", "real", "million")
DEFAULT_SECTIONS = SECTIONS[:-1]
SWEEP = tuple(HnswParams(m, efc) for m in (16, 32) for efc in (100, 200))
EFS: tuple[int | None, ...] = (None, 64, 128, 256)
RECALL_TARGET = 0.98
Results = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Sizes and counts of one run."""

    points: int = 100_000
    clusters: int = 2_000
    calls: int = 200  # timed calls per query kind on the engine
    local_calls: int = 20  # ... and on local mode (2-6 s each at 100k)
    recall_queries: int = 1_000
    local_scan_points: int = 256  # of local mode's duplicate scan, then extrapolated
    edge_scan_points: int = 2_560  # the same extrapolation on the engine, to compare with
    random_points: int = 100_000
    real_variants: int = 60  # seeded variants per picture: ~2,500 photos in all
    real_queries: int = 250
    million: int = 1_000_000
    million_calls: int = 50
    million_recall_queries: int = 200
    build_timeout_s: float = 1_800.0
    million_build_timeout_s: float = 3_600.0


QUICK = Plan(
    points=10_000,
    clusters=200,
    calls=20,
    local_calls=3,
    recall_queries=100,
    local_scan_points=32,
    edge_scan_points=256,
    random_points=10_000,
    real_variants=5,
    real_queries=100,
    million=30_000,
    million_calls=10,
    million_recall_queries=50,
    build_timeout_s=600.0,
    million_build_timeout_s=600.0,
)


def run_section(name: str, plan: Plan, work: Path, results: Results) -> None:
    """Run one section and put its results (plain data) under ``results[name]``."""
    if name == "edge":
        results[name] = asdict(
            run_edge(
                _clustered(plan),
                work / "edge",
                calls=plan.calls,
                recall_queries=plan.recall_queries,
                efs=EFS,
                build_timeout_s=plan.build_timeout_s,
                scan_points=plan.edge_scan_points,
                full_scan=True,
            )
        )
    elif name == "local":
        run = run_local(
            _clustered(plan),
            work / "local",
            calls=plan.local_calls,
            scan_points=plan.local_scan_points,
        )
        results[name] = asdict(run)
    elif name == "sweep":
        settings = tuple(s for s in SWEEP if s != DEFAULT_HNSW)  # the edge section has it
        rows = run_sweep(
            _clustered(plan),
            work / "sweep",
            settings=settings,
            efs=EFS,
            build_timeout_s=plan.build_timeout_s,
            small_set=False,
        )
        results[name] = [asdict(row) for row in rows]
    elif name == "random":
        catalog = random_catalog(plan.random_points, plan.recall_queries)
        rows = run_sweep(
            catalog,
            work / "random",
            settings=(DEFAULT_HNSW,),
            efs=EFS,
            build_timeout_s=plan.build_timeout_s,
            small_set=False,
        )
        results[name] = [asdict(row) for row in rows]
    elif name == "real":
        vectors, about = real_embeddings(work.parent / "store-bench-cache", plan.real_variants)
        catalog = catalog_of(f"real ({len(vectors):,} photos)", vectors, queries=plan.real_queries)
        print(f"  {about}", flush=True)
        rows = run_sweep(
            catalog,
            work / "real",
            settings=SWEEP,
            efs=EFS,
            build_timeout_s=plan.build_timeout_s,
            small_set=True,  # a few thousand points: below Qdrant's size thresholds
        )
        results[name] = {
            "about": about,
            "points": catalog.size,
            "queries": len(catalog.queries),
            "rows": [asdict(row) for row in rows],
        }
    elif name == "million":
        queries = max(plan.million_calls, plan.million_recall_queries)
        catalog = clustered_catalog(plan.million, queries, clusters=plan.million // 50)
        million = run_edge(
            catalog,
            work / "million",
            calls=plan.million_calls,
            recall_queries=plan.million_recall_queries,
            efs=EFS,
            build_timeout_s=plan.million_build_timeout_s,
            scan_points=plan.edge_scan_points,
            full_scan=False,
        )
        results[name] = asdict(million)
    shutil.rmtree(work / name, ignore_errors=True)


def _clustered(plan: Plan) -> Catalog:
    """The clustered catalog of the 100k sections (the same in each: it is seeded)."""
    queries = max(plan.calls, plan.recall_queries)
    return clustered_catalog(plan.points, queries, clusters=plan.clusters)


def tables(results: Results) -> list[Table]:
    """Every table the results so far allow."""
    plan = results["plan"]
    size = f"{plan['points']:,}"
    edge, local = results.get("edge"), results.get("local")
    out = []
    if edge or local:
        out.append(loading_table(size, {"local": local, "edge": edge}))
        out.append(
            query_table(
                f"Query latency at {size} points (ms)",
                {
                    "local": (local or {}).get("queries"),
                    "edge exact": (edge or {}).get("exact"),
                    "edge HNSW": (edge or {}).get("hnsw"),
                },
            )
        )
        add_index_notes(out[-1], edge)
        out.append(duplicates_table(results))
    if edge or sweep_rows(results):
        out.append(recall_table(results))
    million = results.get("million")
    if million:
        out += million_tables(million)
    return out


def add_index_notes(table: Table, run: Results | None) -> None:
    """Latencies by vector during the index build and right after the swap, if measured."""
    run = run or {}
    notes = {
        "while the index was being built (child process)": (run.get("build") or {}).get("during"),
        "in the first queries after the index swap (cold)": run.get("after_swap"),
    }
    for when, latency in notes.items():
        if latency:
            table.notes.append(
                f"by vector {when}: p50 {latency['p50_ms']:.1f} ms, "
                f"p99 {latency['p99_ms']:.1f} ms (n={latency['calls']})"
            )


def million_tables(million: Results) -> list[Table]:
    """Loading, query latency and recall of the million-point run."""
    points = f"{million['loaded']['points']:,}"
    out = [
        loading_table(points, {"edge": million}),
        query_table(
            f"Query latency at {points} points, edge only (ms)",
            {"edge exact": million["exact"], "edge HNSW": million.get("hnsw")},
        ),
    ]
    add_index_notes(out[-1], million)
    recalls = Table(f"Recall@10 at {points} points (m=16, ef_construct=100)", _RECALL_HEAD)
    recalls.add(
        "exact (no index)",
        f"{million['exact_recall']['recall']:.4f}",
        *_latency(million["exact_recall"]),
    )
    for row in million.get("sweep", []):
        recalls.add(
            "unset" if row["hnsw_ef"] is None else row["hnsw_ef"],
            f"{row['recall']:.4f}",
            row["p50_ms"],
            row["p99_ms"],
        )
    if million.get("filtered_recall"):
        recalls.add(
            "unset, brand filter",
            f"{million['filtered_recall']['recall']:.4f}",
            *_latency(million["filtered_recall"]),
        )
    out.append(recalls)
    return out


_RECALL_HEAD = ["search (hnsw_ef)", "recall@10", "p50 ms", "p99 ms"]


def _latency(recall: dict[str, Any]) -> tuple[float, float]:
    return recall["latency"]["p50_ms"], recall["latency"]["p99_ms"]


def save(results: Results, output: Path) -> str:
    """Write the JSON and the Markdown; return the tables as text."""
    chosen, text = recommendation(results, RECALL_TARGET)
    results["recommended"] = {"setting": chosen, "text": text, "target": RECALL_TARGET}
    rendered = tables(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    plan = results["plan"]
    markdown = [
        "# Store benchmark: qdrant-edge (EdgeStore) vs qdrant-client local mode",
        "",
        f"Run {results['started']} on {results['cpus']} CPUs; {plan['points']:,} clustered "
        f"points x 384 ({plan['clusters']:,} clusters), generated by `bench.store_bench_data`.",
        "Written by `python -m bench.store_bench`; ratios compare measurements of one run.",
        "",
        *(part for table in rendered for part in (table.markdown(), "")),
        f"**Recommendation.** {text}",
        "",
    ]
    output.with_suffix(".md").write_text("\n".join(markdown))
    return "\n\n".join(table.text() for table in rendered) + f"\n\n{text}"


def previous(output: Path, plan: Plan) -> Results:
    """Results of an earlier run with the same plan (kept for the sections not run now)."""
    if not output.exists():
        return {}
    try:
        earlier: Results = json.loads(output.read_text())
    except ValueError:
        return {}
    return earlier if earlier.get("plan") == json.loads(json.dumps(asdict(plan))) else {}


def main() -> None:
    """Run the chosen sections, print the tables and write them after each section."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k points, few queries")
    parser.add_argument("--million", action="store_true", help="add the 1,000,000-point run")
    parser.add_argument("--sections", nargs="*", choices=SECTIONS, help="only these sections")
    parser.add_argument("--build-timeout", type=float, help="seconds per 100k index build")
    parser.add_argument("--million-build-timeout", type=float, help="seconds for the 1M build")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/store"))
    parser.add_argument("--output", type=Path, help="default bench/results/store_bench.json")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.build_timeout is not None:
        plan = replace(plan, build_timeout_s=args.build_timeout)
    if args.million_build_timeout is not None:
        plan = replace(plan, million_build_timeout_s=args.million_build_timeout)
    name = "store_bench-quick.json" if args.quick else "store_bench.json"
    output: Path = args.output or Path("bench/results") / name
    sections = args.sections or [*DEFAULT_SECTIONS, *(["million"] if args.million else [])]
    results = previous(output, plan)
    results.update(
        plan=asdict(plan),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        cpus=os.cpu_count(),
    )
    work: Path = args.work_dir.resolve()
    for section in sections:
        started = time.perf_counter()
        print(f"\n== {section} ==", flush=True)
        run_section(section, plan, work, results)
        results.setdefault("seconds", {})[section] = time.perf_counter() - started
        save(results, output)
        print(f"== {section}: {time.perf_counter() - started:.0f} s", flush=True)
    print("\n" + save(results, output))
    print(f"\nwritten {output} and {output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
