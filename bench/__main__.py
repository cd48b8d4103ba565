"""Run the benchmarks: ``python -m bench [--quick] [--only files,mqtt,web,analysis,triage,templates,curve]``.

Results go to bench/results/ingest_files.json, bench/results/ingest_mqtt.json, bench/results/web.json,
bench/results/analysis.json, bench/results/triage.json, bench/results/templates.json and
bench/results/learning_curve.json.
"""

from __future__ import annotations

import argparse
import sys

from bench import analysis, ingest_files, ingest_mqtt, learning_curve, templates, triage, web


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100k lines / 5k messages, one run each (a smoke test)")
    p.add_argument("--only", default="files,mqtt,web,analysis,triage,templates,curve",
                   help="comma-separated: files, mqtt, web, analysis, triage, templates, curve, faults (faults only when named)")
    args = p.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    lines = []
    if "files" in only:
        r = ingest_files.main(["--lines", "100000", "--repeat", "1"] if args.quick else [])
        e = r["results"]["edged"]
        lines.append(
            f"files: edged {e['lines_per_s']:,.0f} lines/s (goal 100,000; {e['lines_per_cpu_s']:,.0f} per CPU second),"
            f" peak RSS {e['peak_rss_mib']:.0f} MiB; baseline {r['results']['baseline']['lines_per_s']:,.0f};"
            f" edged/baseline {r['ratios']['edged/baseline']}"
        )
    if "mqtt" in only:
        if not ingest_mqtt.MOSQUITTO.exists():
            lines.append(f"mqtt: skipped, {ingest_mqtt.MOSQUITTO} is missing (apt-get install mosquitto)")
        else:
            r = ingest_mqtt.main(["--messages", "5000"] if args.quick else [])
            for mode, res in r["results"].items():
                e = res["edged"]
                lines.append(
                    f"mqtt {mode}: edged {e['msgs_per_s']:,.0f} msgs/s (goal 5,000), raw paho"
                    f" {res['raw']['msgs_per_s']:,.0f}; edged/raw {r['ratios'][f'{mode}: edged/raw']}"
                )
    if "web" in only:
        r = web.main(["--quick"] if args.quick else [])
        for phase, res in r["results"].items():
            a = res["all"]
            lines.append(
                f"web {phase}: p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms over {res['requests']} requests"
                f" ({res['requests_per_s']:,.0f}/s, {a['errors']} errors)"
            )
    if "analysis" in only:
        lines += analysis.summary_lines(analysis.main(["--quick"] if args.quick else []))
    if "triage" in only:
        lines += triage.summary_lines(triage.main(["--quick"] if args.quick else []))
    if "curve" in only:
        lines += learning_curve.summary_lines(learning_curve.main(["--quick"] if args.quick else []))
    if "templates" in only:
        lines += templates.summary_lines(templates.main([] if args.quick else ["--model-systems", "HDFS,BGL,OpenSSH"]))
    if "faults" in only:  # opt-in: mounts a tmpfs (root) and keeps a disk full for a minute
        from bench import faults

        for part, res in faults.main(["--quick"] if args.quick else [])["results"].items():
            lines.append(f"faults {part}: {res}")
    print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
