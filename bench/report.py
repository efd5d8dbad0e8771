#!/usr/bin/python3
"""bench/report.py: turns the row scripts' JSON lines into the table (stdout), bench/results.json,
the SVG chart of ratios (written here, no plotting library) and, with --readme, the README table.
Run by bench/run; also by hand: bench/report.py --from-json bench/results.json --svg x.svg."""
import argparse
import datetime
import html
import json
import math
import re
import sys


def ratio_of(r):
    if r.get("ratio") is not None:
        return r["ratio"]
    b, p = r.get("berth"), r.get("peer")
    if b is None or p is None or p == 0:
        return None
    return b / p


def fmt(v, unit=""):
    if v is None:
        return "—"
    if abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return f"{s} {unit}".strip()


def verdict(r):
    """'berth ahead' / 'berth behind' / 'even' (within 5 %), from the ratio and `better`."""
    q = r.get("ratio")
    if q is None:
        return ""
    better = r.get("better", "lower")
    if better == "closer":
        lim = r.get("limit")
        if lim is None or r.get("berth") is None or r.get("peer") is None:
            return ""
        db, dp = abs(r["berth"] - lim), abs(r["peer"] - lim)
        if abs(db - dp) <= 0.02 * lim:
            return "even"
        return "berth closer" if db < dp else "berth farther"
    if 0.95 <= q <= 1.05:
        return "even"
    ahead = q < 1 if better == "lower" else q > 1
    return "berth ahead" if ahead else "berth behind"


def load(args):
    if args.from_json:
        doc = json.load(open(args.from_json))
        return doc["rows"], doc
    rows = []
    for line in open(args.inp):
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            rows.append({"row": "?", "what": "unparsable row output", "error": f"{e}: {line[:200]}"})
    for r in rows:
        r["ratio"] = ratio_of(r)
        r["verdict"] = verdict(r)
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": args.machine,
        "berth": args.berth_version,
        "commit": args.commit,
        "elapsed_s": float(args.elapsed) if args.elapsed else None,
        "ratio": "berth / peer (below 1: berth smaller or faster, unless the row says higher is better)",
        "rows": rows,
    }
    return rows, doc


def table(rows):
    head = ["what", "berth", "peer", "peer's", "berth/peer", "", "how measured"]
    out = []
    for r in rows:
        u = r.get("unit", "")
        how = r.get("how", "")
        if r.get("error"):
            how = (how + "; " if how else "") + "ERROR: " + r["error"]
        out.append([r.get("what", r.get("row", "?")), fmt(r.get("berth"), u), r.get("peer_name", ""),
                    fmt(r.get("peer"), u), fmt(r.get("ratio")), r.get("verdict", ""), how])
    return head, out


def print_table(rows, doc):
    head, out = table(rows)
    w = [max(len(x[i]) for x in [head] + out) for i in range(6)]
    print(f"berth benchmarks, {doc['date']}, {doc['machine']}")
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(head[:6])))
    for x in out:
        print("  ".join(c.ljust(w[i]) if i != 1 and i != 3 and i != 4 else c.rjust(w[i]) for i, c in enumerate(x[:6])))
        print("    " + x[6])
    if doc.get("elapsed_s") is not None:
        print(f"({doc['elapsed_s']:.0f} s, {doc.get('berth', '')}, commit {doc.get('commit', '')})")


def markdown(rows, doc):
    head, out = table(rows)
    esc = lambda s: s.replace("|", "\\|")
    lines = [f"Last run: {doc['date']} on {doc['machine']}; {doc.get('berth', '')} "
             f"(commit {doc.get('commit', '')}); `bench/run` took {doc.get('elapsed_s') or 0:.0f} s.", "",
             "| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for x in out:
        lines.append("| " + " | ".join(esc(c) for c in x) + " |")
    return "\n".join(lines)


def svg(rows, doc):
    bars = [r for r in rows if r.get("ratio") is not None and r["ratio"] > 0]
    errs = [r for r in rows if r.get("ratio") is None]
    lo = min([0.01] + [r["ratio"] for r in bars])
    hi = max([10.0] + [r["ratio"] for r in bars])
    lmin, lmax = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    left, plot_w, right = 340, 460, 90
    top, bar_h, gap = 58, 16, 6
    height = top + (len(bars) + len(errs)) * (bar_h + gap) + 60
    width = left + plot_w + right
    x = lambda v: left + (math.log10(v) - lmin) / (lmax - lmin) * plot_w
    e = html.escape
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="10" y="20" font-size="15" font-weight="bold">berth / peer (log scale; left of 1: berth smaller or faster)</text>',
         f'<text x="10" y="38" fill="#555">{e(doc["date"])} · {e(doc["machine"][:110])}</text>']
    for k in range(lmin, lmax + 1):
        v = 10.0 ** k
        xx = x(v)
        o.append(f'<line x1="{xx:.1f}" y1="{top - 6}" x2="{xx:.1f}" y2="{height - 45}" stroke="#ccc"/>')
        o.append(f'<text x="{xx:.1f}" y="{height - 30}" text-anchor="middle" fill="#555">{v:g}×</text>')
    x1 = x(1.0)
    o.append(f'<line x1="{x1:.1f}" y1="{top - 6}" x2="{x1:.1f}" y2="{height - 45}" stroke="#000" stroke-width="1.5"/>')
    y = top
    for r in bars:
        q = r["ratio"]
        v = r.get("verdict", "")
        color = {"berth ahead": "#2e8b57", "berth closer": "#2e8b57", "berth behind": "#c0392b",
                 "berth farther": "#c0392b"}.get(v, "#7f8c8d")
        xa, xb = sorted((x1, x(q)))
        label = r.get("chart") or f'{r.get("what", "")} — {r.get("peer_name", "")}'
        if len(label) > 52:
            label = label[:51] + "…"
        o.append(f'<text x="{left - 8}" y="{y + bar_h - 4}" text-anchor="end">{e(label)}</text>')
        o.append(f'<rect x="{xa:.1f}" y="{y}" width="{max(xb - xa, 1.5):.1f}" height="{bar_h}" fill="{color}"/>')
        o.append(f'<text x="{max(xb, x1) + 5:.1f}" y="{y + bar_h - 4}">{q:.3g}×</text>')
        y += bar_h + gap
    for r in errs:
        label = (r.get("chart") or f'{r.get("what", r.get("row", ""))} — {r.get("peer_name", "")}')[:52]
        o.append(f'<text x="{left - 8}" y="{y + bar_h - 4}" text-anchor="end" fill="#777">{e(label)}</text>')
        msg = ("no ratio: " + (r.get("error") or "no peer figure"))[:80]
        o.append(f'<text x="{left + 4}" y="{y + bar_h - 4}" fill="#c0392b">{e(msg)}</text>')
        y += bar_h + gap
    o.append(f'<text x="10" y="{height - 10}" fill="#555">green: berth ahead · red: berth behind · grey: within 5 % · '
             f'bench/results.json has every figure and how it was measured</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp")
    ap.add_argument("--from-json")
    ap.add_argument("--json")
    ap.add_argument("--svg")
    ap.add_argument("--readme")
    ap.add_argument("--machine", default="")
    ap.add_argument("--elapsed", default="")
    ap.add_argument("--berth-version", default="")
    ap.add_argument("--commit", default="")
    args = ap.parse_args()
    rows, doc = load(args)
    print_table(rows, doc)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg(rows, doc))
    if args.readme:
        text = open(args.readme).read()
        new, n = re.subn(r"(<!-- bench:begin -->\n).*?(<!-- bench:end -->)",
                         lambda m: m.group(1) + markdown(rows, doc) + "\n" + m.group(2), text, flags=re.S)
        if n != 1:
            sys.exit(f"report: {args.readme} has no <!-- bench:begin --> ... <!-- bench:end --> markers")
        open(args.readme, "w").write(new)


if __name__ == "__main__":
    main()
