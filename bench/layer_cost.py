"""Reads the callgrind dumps bench/layer_cost.sh wrote and prints instructions per request:
the whole request for each server and row, and for tandem each layer of its pipeline, outermost
first, inclusive (the step and everything inside it) and its own share (inclusive minus the
steps nested in it).

    python3 bench/layer_cost.py REQUESTS DIR
"""

import glob
import os
import re
import subprocess
import sys

# tandem's pipeline (src/pipeline/mod.rs), outermost first: one actix layer whose
# `Pipeline::handle` runs each step in turn. Each entry is (label, regex of the function whose
# inclusive cost is the step, depth): a step at depth d + 1 right below one at depth d runs inside
# it, so a step's own cost is its inclusive cost minus that of the steps nested in it. For an
# async fn the function is the poll of its future. The fat-LTO release build inlines
# `context::enter`, `AccessLog::begin`, `route` (with catch_unwind and actix's router) and
# `ErrorPages::render` into `Pipeline::handle`, so they have no symbol of their own: their cost is
# in the pipeline's own column. A step that does not run on a row shows "–".
TANDEM_LAYERS = [
    (
        "the pipeline: `PipelineService::call`'s future and `Pipeline::handle` (own: context, "
        "access log, router, catch_unwind, error step, drain)",
        r"tandem::pipeline::(Pipeline::handle|PipelineService<S> as actix_service::Service"
        r"<actix_web::service::ServiceRequest>>::call)::\{\{closure\}\}$",
        0,
    ),
    (
        "the handler (static files: lookup, negotiation, headers), called by the router or, with "
        "only the route table's routes, by the pipeline itself",
        r"(actix_web::handler::handler_service::\{\{closure\}\}::\{\{closure\}\}"
        r"|^tandem::static_files::serve::\{\{closure\}\}$)",
        1,
    ),
    ("errors: Problem::to_response (status, headers, problem+json body)",
     r"tandem::problem::Problem::to_response$", 1),
    ("IDs echoed: context::Ids::echo", r"tandem::pipeline::context::Ids::echo$", 1),
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
    for label, pattern, _ in TANDEM_LAYERS:
        matches = [(c, n) for n, c in functions.items() if re.search(pattern, n)]
        if matches:
            count, name = max(matches)
            result.append((label, count / requests, name))
        else:
            result.append((label, None, None))
    return result


def nested(index, layers):
    """Inclusive instructions of the steps found directly inside step `index`."""
    depth = TANDEM_LAYERS[index][2]
    total = 0.0
    for (_, _, d), (_, count, _) in zip(TANDEM_LAYERS[index + 1 :], layers[index + 1 :]):
        if d <= depth:
            break
        if d == depth + 1 and count is not None:
            total += count
    return total


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
    for index, (label, _, _) in enumerate(TANDEM_LAYERS):
        cells = []
        for row in ROWS:
            layers = by_row[row]
            if not layers or layers[index][1] is None:
                cells += ["–", "–"]
                continue
            inclusive = layers[index][1]
            inner = nested(index, layers)
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
