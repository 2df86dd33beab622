"""Reads the callgrind dumps bench/layer_cost.sh wrote and prints instructions per request:
the whole request for each server and row, and for tandem each layer of its pipeline, outermost
first, inclusive (the layer and everything inside it) and its own share (inclusive minus the
next layer's inclusive).

    python3 bench/layer_cost.py REQUESTS DIR
"""

import glob
import os
import re
import subprocess
import sys

# tandem's pipeline as startup.rs wraps it, outermost first, then the handler. Each entry names
# the function whose inclusive cost is the layer: for an async fn, the poll of its future. Where
# the release build inlined a layer into its neighbour, the label says what the symbol covers.
TANDEM_LAYERS = [
    (
        "request_id::assign, with actix's app entry (inlined together)",
        r"actix_service::map_err::MapErrFuture<A,Req,F,E> as core::future::future::Future>::poll",
    ),
    ("client_ip::resolve", r"tandem::client_ip::resolve::\{\{closure\}\}"),
    ("access_log::log_requests", r"tandem::access_log::log_requests::\{\{closure\}\}"),
    ("shutdown::close_when_draining", r"tandem::shutdown::close_when_draining::\{\{closure\}\}"),
    ("error_pages::render_errors", r"tandem::error_pages::render_errors::\{\{closure\}\}"),
    (
        "rate_limit::limit (limiter off) and CatchPanic's own future",
        r"tandem::rate_limit::limit::\{\{closure\}\}",
    ),
    (
        "inside CatchPanic's catch_unwind: body_limit::enforce, routing",
        r"core::panic::unwind_safe::AssertUnwindSafe<F> as core::future::future::Future>::poll",
    ),
    (
        "the handler, static_files::serve",
        r"actix_web::handler::handler_service::\{\{closure\}\}::\{\{closure\}\}",
    ),
]

ROWS = ["html", "304", "404"]
LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def annotate(path):
    """(total instructions, {function: inclusive instructions}) of one dump."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total, functions = None, {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        name = m.group(2).strip()
        if name.startswith("PROGRAM TOTALS"):
            total = count
            continue
        # "file:function [object]" -> "function"
        name = re.sub(r"\s+\[[^\]]*\]$", "", name)
        name = name.split(":", 1)[1] if re.match(r"^[^:]*:[^:]", name) else name
        functions[name] = max(functions.get(name, 0), count)
    if total is None:
        sys.exit(f"{path}: no PROGRAM TOTALS line in callgrind_annotate's output")
    return total, functions


def dumps(directory):
    """{(server, row): path} from the trigger each dump records ("server-row")."""
    found = {}
    for path in glob.glob(os.path.join(directory, "*.callgrind*")):
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"^desc: Trigger: (?:Client Request: )?dump (\S+)", line)
                if m:
                    server, _, row = m.group(1).rpartition("-")
                    found[(server, row)] = path
                    break
                if line.startswith("positions:") or line.startswith("fn="):
                    break
    return found


def layer_costs(functions, requests):
    """[(layer, inclusive per request, matched function)] for the layers found."""
    result = []
    for label, pattern in TANDEM_LAYERS:
        matches = [(c, n) for n, c in functions.items() if re.search(pattern, n)]
        if matches:
            count, name = max(matches)
            result.append((label, count / requests, name))
        else:
            result.append((label, None, None))
    return result


def main():
    requests, directory = int(sys.argv[1]), sys.argv[2]
    found = dumps(directory)
    servers = sorted({s for s, _ in found}, key=lambda s: (s != "tandem", s))
    profiles = {key: annotate(path) for key, path in found.items()}

    print("\nInstructions per request (callgrind, user space, whole process)\n")
    print("| server | " + " | ".join(ROWS) + " |")
    print("| --- |" + " ---: |" * len(ROWS))
    for server in servers:
        cells = []
        for row in ROWS:
            p = profiles.get((server, row))
            cells.append(f"{p[0] / requests:,.0f}" if p else "–")
        print(f"| {server} | " + " | ".join(cells) + " |")
    if ("floor-0", "html") in profiles and ("floor-7", "html") in profiles:
        per = [
            (profiles[("floor-7", r)][0] - profiles[("floor-0", r)][0]) / requests / 7
            for r in ROWS
            if ("floor-7", r) in profiles and ("floor-0", r) in profiles
        ]
        print(
            "\nOne pass-through `from_fn` layer (floor-7 − floor-0, ÷ 7): "
            + ", ".join(f"{r} {v:,.0f}" for r, v in zip(ROWS, per))
            + " instructions per request"
        )

    print("\ntandem's pipeline, outermost first: inclusive / own instructions per request\n")
    print("| layer | " + " | ".join(f"{r} incl. | {r} own" for r in ROWS) + " |")
    print("| --- |" + " ---: | ---: |" * len(ROWS))
    by_row = {}
    for row in ROWS:
        p = profiles.get(("tandem", row))
        by_row[row] = layer_costs(p[1], requests) if p else []
    for index, (label, _) in enumerate(TANDEM_LAYERS):
        cells = []
        for row in ROWS:
            layers = by_row[row]
            if not layers or layers[index][1] is None:
                cells += ["–", "–"]
                continue
            inclusive = layers[index][1]
            inner = next((c for _, c, _ in layers[index + 1 :] if c is not None), 0.0)
            cells += [f"{inclusive:,.0f}", f"{inclusive - inner:,.0f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for row in ROWS:
        p = profiles.get(("tandem", row))
        outer = next((c for _, c, _ in by_row[row] if c is not None), None)
        cells += [f"{p[0] / requests:,.0f}" if p else "–",
                  f"{p[0] / requests - outer:,.0f}" if p and outer is not None else "–"]
    print("| whole request (own = actix-web outside the layers) | " + " | ".join(cells) + " |")
    if os.environ.get("VERBOSE"):
        for row in ROWS:
            for label, _, name in by_row[row]:
                print(f"  {row} {label}: {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
