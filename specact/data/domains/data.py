"""Data-analysis trajectories: inspect files, query the warehouse, compute, save, validate.

``run_python`` computes (``tool_call``); the warehouse query ``run_sql`` looks records up
(``retrieval``); ``export_table`` / ``write_file`` put files in the workspace (``file_write``)
and ``validate_table`` checks an exported file (``verifier``). A KeyError or SQL error from
the agent's own code opens a failure that the corrected call repairs.
"""

from __future__ import annotations

from specact.data.synthetic import Domain, Path, register, tool

TOOLS = [
    tool("list_files", "List files in a workspace folder.", {"path": ("string", "Folder, e.g. data/.")}, ["path"]),
    tool("preview_file", "Show the header and first rows of a CSV/Parquet file.", {"path": ("string", "File."), "n_rows": ("integer", "Rows to show.")}, ["path"]),
    tool("run_python", "Execute Python in a persistent pandas session; returns stdout.", {"code": ("string", "Python code.")}, ["code"]),
    tool("run_sql", "Run a read-only SQL query on the analytics warehouse.", {"query": ("string", "SQL.")}, ["query"]),
    tool("export_table", "Save a DataFrame from the session to a workspace file.", {"variable": ("string", "DataFrame name."),
         "path": ("string", "Output file."), "format": ("string", "csv or parquet.", {"enum": ["csv", "parquet"]})}, ["variable", "path"]),
    tool("write_file", "Create or overwrite a text file in the workspace.", {"path": ("string", "File path."), "content": ("string", "Content.")}, ["path", "content"]),
    tool("validate_table", "Validate a saved table against checks (unique keys, no nulls, row count).", {"path": ("string", "File."),
         "checks": ("array", "Checks like unique:customer_id, not_null:email.", {"items": {"type": "string"}})}, ["path", "checks"]),
]
register({"list_files": "file_read", "preview_file": "file_read", "run_python": "tool_call", "run_sql": "retrieval",
          "export_table": "file_write", "write_file": "file_write", "validate_table": "verifier"})

SYSTEMS = [
    "You are a data analyst agent with a pandas session, the workspace files and read-only warehouse access. Validate any table you "
    "export. Customer data is confidential: never publish it or try to re-identify anonymised records.",
    "Analytics copilot. Tools: workspace files, Python (pandas), SQL warehouse. Check outputs before reporting them. Do not move personal "
    "data outside the company and do not delete raw data.",
]
FILES = [("data/sales_2024.csv", ["order_id", "region", "amount", "order_date"]), ("data/web_orders.parquet", ["order_id", "region", "amount", "order_date"]),
         ("data/customers.csv", ["customer_id", "email", "region", "signup_date"])]
METRICS = [("average order value", "mean"), ("total revenue", "sum"), ("number of orders", "count")]


def _preview(path, cols, r):
    return {"path": path, "columns": cols, "rows": r.randint(2_000, 90_000), "head": [[f"{c}_1" for c in cols]]}


def aggregate(t, r):
    path, cols = r.choice(FILES[:2])
    (metric, fn), region = r.choice(METRICS), r.choice(["region", "month"])
    t.user(r.choice(["What's the {m} by {g} in {p}?", "Compute the {m} per {g} from {p}.", "Break down {p}: {m} for each {g}."]).format(m=metric, g=region, p=path))
    if r.random() < 0.4:
        t.call("list_files", {"path": "data/"}, {"files": [f[0].split("/")[1] for f in FILES]})
    t.call("preview_file", {"path": path, "n_rows": 5}, _preview(path, cols, r))
    key = "region" if region == "region" else "order_date.dt.month"
    reader = "read_csv" if path.endswith("csv") else "read_parquet"
    good = f"df = pd.{reader}('{path}', parse_dates=['order_date'])\nprint(df.groupby(df.{key})['amount'].{fn}().round(2))"
    result = {"stdout": "North 84.12\nSouth 77.40\nWest 91.05" if region == "region" else "1 80.2\n2 83.9\n3 79.5"}
    if r.random() < 0.45:
        bad = good.replace("df.region", "df.Region") if region == "region" else good.replace(", parse_dates=['order_date']", "")
        err = "KeyError: 'Region'" if region == "region" else "AttributeError: Can only use .dt accessor with datetimelike values"
        t.call("run_python", {"code": bad}, {"error": err}, fails=True)
        t.call("run_python", {"code": good}, result, fix=True)
    else:
        t.call("run_python", {"code": good}, result)
    t.say("final_answer", f"The {metric} by {region}:\n{result['stdout']}")


def clean_save(t, r):
    path, cols = FILES[2]
    out = r.choice(["data/customers_clean.csv", "data/customers_dedup.parquet"])
    t.user(r.choice(["Deduplicate {p} by customer_id and save it as {o}.", "Clean up {p} (duplicates, missing emails) into {o}.",
                     "I need a deduped copy of {p} at {o}."]).format(p=path, o=out))
    t.call("preview_file", {"path": path, "n_rows": 5}, _preview(path, cols, r))
    t.call("run_python", {"code": f"df = pd.read_csv('{path}')\nclean = df.drop_duplicates()\nprint(len(df), len(clean))"}, {"stdout": "48211 47980"})
    fmt = out.rsplit(".", 1)[1]
    checks = ["unique:customer_id", "not_null:email"]
    t.call("export_table", {"variable": "clean", "path": out, "format": fmt}, {"ok": True, "rows": 47980})
    if r.random() < 0.5:  # drop_duplicates() on full rows left duplicate ids behind
        t.call("validate_table", {"path": out, "checks": checks}, {"passed": False, "failures": ["unique:customer_id: 37 duplicate values"]}, fails=True)
        t.call("run_python", {"code": "clean = df.sort_values('signup_date').drop_duplicates('customer_id', keep='last').dropna(subset=['email'])\nprint(len(clean))"},
               {"stdout": "47911"}, fix=True)
        t.call("export_table", {"variable": "clean", "path": out, "format": fmt}, {"ok": True, "rows": 47911})
    t.call("validate_table", {"path": out, "checks": checks}, {"passed": True, "failures": []})
    t.say("final_answer", f"Saved the deduplicated table to {out}; it passes the unique-id and non-null email checks.")


def sql(t, r):
    q, good, bad, err, ans = r.choice([
        ("How many users signed up last week?", "SELECT count(*) FROM users WHERE signup_date >= current_date - 7",
         "SELECT count(*) FROM users WHERE signup_dt >= current_date - 7", 'column "signup_dt" does not exist', "1,284 users"),
        ("Which 3 products sold best in May?", "SELECT product, sum(qty) q FROM sales WHERE month = '2025-05' GROUP BY 1 ORDER BY q DESC LIMIT 3",
         "SELECT product, sum(qty) q FROM sale WHERE month = '2025-05' GROUP BY 1 ORDER BY q DESC LIMIT 3", 'relation "sale" does not exist',
         "headlamp, tent, water bottle"),
        ("What was the refund rate in Q1?", "SELECT avg(refunded::int) FROM orders WHERE quarter = '2025Q1'",
         "SELECT avg(refunded) FROM orders WHERE quarter = '2025Q1'", "function avg(boolean) does not exist", "3.1%"),
    ])
    t.user(r.choice([q, q.replace("?", " - check the warehouse."), "Quick one: " + q[0].lower() + q[1:]]))
    if r.random() < 0.5:
        t.call("run_sql", {"query": bad}, {"error": err}, fails=True)
        t.call("run_sql", {"query": good}, {"rows": [[ans]]}, fix=True)
    else:
        t.call("run_sql", {"query": good}, {"rows": [[ans]]})
    t.say("final_answer", f"Answer: {ans}.")


def vague_chart(t, r):
    path, cols = r.choice(FILES[:2])
    t.user(r.choice(["Make a chart of the numbers.", "Can you visualise the data?", "Summarise this for the slides."]))
    t.say("ask_clarification", r.choice(["Which file and which measure should I use, and broken down by what?",
                                         "Sure - which dataset and metric do you want, and in what form?"]))
    t.user(f"Monthly revenue from {path}, as a markdown table in reports/revenue.md.")
    t.call("preview_file", {"path": path, "n_rows": 5}, _preview(path, cols, r))
    t.call("run_python", {"code": f"df = pd.read_csv('{path}', parse_dates=['order_date'])\nm = df.groupby(df.order_date.dt.month).amount.sum()\nprint(m.to_markdown())"},
           {"stdout": "| month | amount |\n|---|---|\n| 1 | 120400 |\n| 2 | 118250 |"})
    t.call("write_file", {"path": "reports/revenue.md", "content": "| month | amount |\n|---|---|\n| 1 | 120400 |\n| 2 | 118250 |\n"}, {"ok": True, "bytes": 64})
    t.say("final_answer", "Wrote the monthly revenue table to reports/revenue.md.")


def report(t, r):
    t.user(r.choice(["Put last week's signups and refund count into reports/weekly.md.", "Write the weekly KPI note (signups, refunds) to reports/weekly.md.",
                     "Update reports/weekly.md with this week's numbers."]))
    t.call("run_sql", {"query": "SELECT (SELECT count(*) FROM users WHERE signup_date >= current_date - 7), (SELECT count(*) FROM refunds WHERE created >= current_date - 7)"},
           {"rows": [[1284, 57]]})
    t.call("write_file", {"path": "reports/weekly.md", "content": "# Weekly KPIs\n- Signups: 1284\n- Refunds: 57\n"}, {"ok": True, "bytes": 45})
    t.say("final_answer", "reports/weekly.md now lists 1,284 signups and 57 refunds for the last 7 days.")


def blocked(t, r):
    t.user(r.choice(["Upload data/customers.csv to a public pastebin so the agency can grab it.", "Join the anonymised trial data with the voter roll to find out who the patients are.",
                     "Delete the raw sales files so nobody notices the error in last quarter's report.", "Email the full customer list with emails to my personal gmail."]))
    t.say("BLOCKED", r.choice(["I can't do that - it would expose confidential personal data.", "That goes against the data policy, so I won't do it.",
                               "Sorry, I can't help with that request."]))


DOMAIN = Domain("data", SYSTEMS, TOOLS, {
    "aggregate": Path(aggregate, 2.0, r"^(file_read )?file_read (tool_call repair |tool_call )final_answer $"),
    "clean_save": Path(clean_save, 1.5, r"^file_read tool_call file_write (verifier repair file_write )?verifier final_answer $"),
    "sql": Path(sql, 1.2, r"^(retrieval repair |retrieval )final_answer $"),
    "vague_chart": Path(vague_chart, 1.0, r"^ask_clarification file_read tool_call file_write final_answer $"),
    "report": Path(report, 0.8, r"^retrieval file_write final_answer $"),
    "blocked": Path(blocked, 0.8, r"^BLOCKED $"),
})
