"""Coding-agent trajectories in a small Python repo: read, edit, test, fix, answer.

The check after an edit is what makes ``verifier`` / ``repair`` learnable: the same
``edit_file`` is ``file_write`` the first time and ``repair`` after the agent's own edit
failed the tests; the same ``run_command`` is ``tool_call`` for ``pip install`` and
``verifier`` for ``pytest``; a failing reproduction of a pre-existing bug opens no failure.
"""

from __future__ import annotations

from specact.data.synthetic import Domain, Path, register, tool

TOOLS = [
    tool("list_dir", "List files and folders under a repository path.", {"path": ("string", "Folder relative to the repo root.")}, ["path"]),
    tool("read_file", "Read a file of the repository.", {"path": ("string", "File path."), "start_line": ("integer", "First line (1-based)."),
         "end_line": ("integer", "Last line.")}, ["path"]),
    tool("search_code", "Search the repository for a text pattern (like grep -rn).", {"pattern": ("string", "Text or regex."),
         "path": ("string", "Folder to search, default the whole repo.")}, ["pattern"]),
    tool("write_file", "Create or overwrite a file with the given content.", {"path": ("string", "File path."), "content": ("string", "Full content.")}, ["path", "content"]),
    tool("edit_file", "Replace an exact snippet of a file with new text.", {"path": ("string", "File path."), "old_text": ("string", "Exact text to replace."),
         "new_text": ("string", "Replacement.")}, ["path", "old_text", "new_text"]),
    tool("delete_path", "Delete a file or folder of the repository.", {"path": ("string", "Path to delete.")}, ["path"]),
    tool("run_tests", "Run the test suite or a subset with pytest.", {"target": ("string", "Test file, node id or -k expression; empty for all.")}),
    tool("run_command", "Run a shell command in the repository root.", {"command": ("string", "The command line."),
         "timeout_s": ("integer", "Time limit in seconds.")}, ["command"]),
    tool("search_docs", "Search the documentation of third-party libraries.", {"query": ("string", "What to look up."),
         "library": ("string", "Library name, e.g. pandas.")}, ["query"]),
    tool("git_commit", "Stage all changes and create a commit.", {"message": ("string", "Commit message.")}, ["message"]),
]
register({"list_dir": "file_read", "read_file": "file_read", "search_code": "file_read", "write_file": "file_write",
          "edit_file": "file_write", "delete_path": "file_write", "run_tests": "verifier", "search_docs": "retrieval",
          "git_commit": "tool_call"})

SYSTEMS = [
    "You are a coding agent working in the user's repository. Use the tools to inspect and change files, and run the tests "
    "before you report a change as done. Never commit secrets, never force-push, and ask before deleting files.",
    "You are an autonomous software engineer with shell access to a Python project. Keep changes minimal, verify them with "
    "the test suite or linters, and confirm with the user before any destructive operation. You cannot deploy or send email.",
    "Assistant for a developer. Tools: file reading/editing, test runner, shell. Policy: no secrets in the repo, no "
    "disabling of tests to make CI green, confirm deletions first.",
]

PACKAGES = ["billing", "inventory", "accounts", "reports", "scheduler", "shipping"]
# A bug: function, symptom, buggy line, fixed line, the failing assertion, and a second slip
# (what a first fix tends to miss: failure message, then the snippet and its correction).
BUGS = [
    ("apply_discount", "applies the discount twice when a coupon is stacked", "total = total * (1 - rate) * (1 - rate)",
     "total = total * (1 - rate)", "AssertionError: assert 81.0 == 90.0",
     ("AssertionError: assert 90.00000000000001 == 90.0", "total = total * (1 - rate)", "total = round(total * (1 - rate), 2)")),
    ("parse_date", "crashes on timestamps like '2024-03-07T10:00:00Z'", "return datetime.strptime(value, '%Y-%m-%d')",
     "return datetime.fromisoformat(value.replace('Z', '+00:00'))", "ValueError: unconverted data remains: T10:00:00Z",
     ("NameError: name 'datetime' is not defined", "import re", "import re\nfrom datetime import datetime")),
    ("normalize_email", "keeps uppercase letters, so duplicate accounts slip through", "return email.strip()",
     "return email.strip().lower()", "AssertionError: assert 'Ann@X.io' == 'ann@x.io'",
     ("AttributeError: 'NoneType' object has no attribute 'strip'", "return email.strip().lower()", "return (email or '').strip().lower()")),
    ("chunk_items", "drops the last partial chunk", "for i in range(0, len(items) - size, size):",
     "for i in range(0, len(items), size):", "AssertionError: assert [[1, 2]] == [[1, 2], [3]]",
     ("ValueError: range() arg 3 must not be zero", "for i in range(0, len(items), size):", "for i in range(0, len(items), max(size, 1)):")),
    ("slugify", "leaves spaces and punctuation in the slug", "return text.lower()",
     "return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')", "AssertionError: assert 'hello world!' == 'hello-world'",
     ("NameError: name 're' is not defined", "import os", "import os\nimport re")),
    ("load_config", "ignores the APP_ENV override", "env = 'dev'", "env = os.environ.get('APP_ENV', 'dev')",
     "AssertionError: assert 'dev' == 'prod'", ("NameError: name 'os' is not defined", "import json", "import json\nimport os")),
]


def _setting(r):
    pkg = r.choice(PACKAGES)
    func, symptom, old, new, err, second = r.choice(BUGS)
    mod = r.choice(["utils", "core", "helpers", "service"])
    return dict(pkg=pkg, func=func, symptom=symptom, old=old, new=new, err=err, second=second,
                path=f"{pkg}/{mod}.py", test=f"tests/test_{mod}.py", tname=f"test_{func}")


def _file(s):
    body = f"import json\nimport os\nimport re\n\n\ndef {s['func']}(*args, **kwargs):\n    {s['old']}\n"
    return {"path": s["path"], "content": body, "lines": body.count("\n")}


def _passed(r):
    return {"exit_code": 0, "summary": f"{r.randint(6, 60)} passed in {r.uniform(0.3, 4):.2f}s"}


def _failed(r, s, msg):
    return {"exit_code": 1, "summary": f"1 failed, {r.randint(5, 59)} passed in {r.uniform(0.3, 4):.2f}s",
            "failures": [{"test": f"{s['test']}::{s['tname']}", "message": msg}]}


def _check(t, r, s, result, **kw):
    """Run the tests one of three ways (all checks, so all ``verifier`` unless they fix something)."""
    how = r.random()
    if how < 0.4:
        return t.call("run_tests", {"target": s["test"]}, result, **kw)
    if how < 0.7:
        return t.call("run_command", {"command": f"pytest -q {s['test']}"}, result, **kw)
    return t.call("run_tests", {"target": f"-k {s['func']}"}, result, **kw)


def _edit_and_verify(t, r, s, *, first_edit=True):
    """edit -> tests [-> fail -> (inspect) -> repair -> tests] (-> lint)."""
    if first_edit and r.random() < 0.15:  # the edit itself fails: wrong snippet
        bad = s["old"].replace("    ", "  ")
        t.call("edit_file", {"path": s["path"], "old_text": bad, "new_text": s["new"]},
               {"error": f"old_text not found in {s['path']}"}, fails=True)
        t.call("edit_file", {"path": s["path"], "old_text": s["old"], "new_text": s["new"]}, {"ok": True, "replacements": 1}, fix=True)
    else:
        t.call("edit_file", {"path": s["path"], "old_text": s["old"], "new_text": s["new"]}, {"ok": True, "replacements": 1})
    if r.random() < 0.3:  # re-read the edited lines before running anything: a write's success is not always followed by a check
        t.call("read_file", {"path": s["path"], "start_line": 6, "end_line": 7},
               {"path": s["path"], "content": f"def {s['func']}(*args, **kwargs):\n    {s['new']}\n", "lines": 2})
    if r.random() < 0.5:
        err, old2, new2 = s["second"]
        _check(t, r, s, _failed(r, s, err), fails=True)
        if r.random() < 0.4:
            t.call("read_file", {"path": s["test"]}, {"path": s["test"], "content": f"def {s['tname']}():\n    ...\n", "lines": 2})
        t.call("edit_file", {"path": s["path"], "old_text": old2, "new_text": new2}, {"ok": True, "replacements": 1}, fix=True)
    _check(t, r, s, _passed(r))
    if r.random() < 0.3:
        t.call("run_command", {"command": f"ruff check {s['pkg']}"}, {"exit_code": 0, "output": "All checks passed!"})


DONE = ["Fixed: `{func}` in {path} now {fix}. The tests pass.", "Done - I changed {path} so `{func}` {fix}; {test} is green.",
        "The bug is fixed ({path}). `{func}` {fix}, and the test suite passes."]
FIXES = {"apply_discount": "applies the rate once", "parse_date": "accepts ISO timestamps with Z", "normalize_email": "lower-cases addresses",
         "chunk_items": "keeps the last partial chunk", "slugify": "replaces spaces and punctuation with dashes", "load_config": "honours APP_ENV"}


def _done(t, r, s):
    t.say("final_answer", r.choice(DONE).format(fix=FIXES[s["func"]], **s))


def bugfix(t, r):
    s = _setting(r)
    named = r.random() < 0.6
    t.user(r.choice([
        "`{func}` {symptom}. It's in {path}, can you fix it?", "Bug report: {func} {symptom} ({path}). Please fix.",
        "Our {pkg} code has a problem: {func} {symptom}. Could you take care of it? The code is in {path}.",
    ] if named else [
        "`{func}` {symptom}. Can you fix it?", "Users report that {func} {symptom}. Please look into it and fix it.",
        "Something's off in {pkg}: {func} {symptom}. Sort it out please.",
    ]).format(**s))
    if r.random() < 0.35:  # reproduce first: a failing check of code the agent has not touched
        _check(t, r, s, _failed(r, s, s["err"]))
    if not named:
        t.call("search_code", {"pattern": f"def {s['func']}"}, {"matches": [f"{s['path']}:6:def {s['func']}(*args, **kwargs):"]})
    t.call("read_file", {"path": s["path"]}, _file(s))
    _edit_and_verify(t, r, s)
    _done(t, r, s)
    if r.random() < 0.25:
        t.user(r.choice(["Great, commit that please.", "Thanks! Commit it with a sensible message.", "Perfect - can you commit?"]))
        t.call("git_commit", {"message": f"Fix {s['func']}: {FIXES[s['func']]}"}, {"commit": f"{r.getrandbits(28):07x}", "files_changed": 1})
        t.say("final_answer", "Committed.")


def direct_edit(t, r):
    s = _setting(r)
    t.user(r.choice([
        "In {path}, replace `{old}` with `{new}`.", "Please change the line `{old}` in {path} to `{new}` - that's the fix for {func}.",
        "{path}: `{func}` {symptom}. I already know the fix: use `{new}` instead of `{old}`.",
    ]).format(**s))
    _edit_and_verify(t, r, s)
    _done(t, r, s)


def explain(t, r):
    s = _setting(r)
    t.user(r.choice(["Why does `{func}` behave like this: it {symptom}?", "Where is `{func}` defined, and what does it do?",
                     "Is it expected that `{func}` {symptom}? Don't change anything yet, just explain."]).format(**s))
    if r.random() < 0.6:
        t.call("search_code", {"pattern": s["func"]}, {"matches": [f"{s['path']}:6:def {s['func']}(*args, **kwargs):",
                                                                   f"{s['test']}:3:def {s['tname']}():"]})
    t.call("read_file", {"path": s["path"]}, _file(s))
    t.say("final_answer", f"`{s['func']}` is defined in {s['path']}. The culprit is `{s['old']}`: that is why it {s['symptom']}. "
          f"Changing it to `{s['new']}` would fix it.")


def new_module(t, r):
    s = _setting(r)
    name = r.choice(["money", "textutil", "retry", "dates", "ids"])
    path, test = f"{s['pkg']}/{name}.py", f"tests/test_{name}.py"
    t.user(r.choice(["Add a module {path} with a function `{func}` and a test for it.", "Please create {path} exposing `{func}`; cover it in {test}.",
                     "We need a small helper module, {path}, that provides `{func}`. Add tests too."]).format(**{**s, "path": path, "test": test}))
    if r.random() < 0.5:
        t.call("list_dir", {"path": s["pkg"]}, {"entries": ["__init__.py", "core.py", "utils.py"]})
    t.call("write_file", {"path": path, "content": f"def {s['func']}(*args, **kwargs):\n    {s['new']}\n"}, {"ok": True, "bytes": 120})
    t.call("write_file", {"path": test, "content": f"from {s['pkg']}.{name} import {s['func']}\n\n\ndef {s['tname']}():\n    ...\n"}, {"ok": True, "bytes": 90})
    s2 = {**s, "path": path, "test": test}
    if r.random() < 0.4:
        err, _, _ = s["second"]
        _check(t, r, s2, _failed(r, s2, err), fails=True)
        t.call("write_file", {"path": path, "content": f"import os\nimport re\n\n\ndef {s['func']}(*args, **kwargs):\n    {s['second'][2]}\n"},
               {"ok": True, "bytes": 140}, fix=True)
    _check(t, r, s2, _passed(r))
    t.say("final_answer", f"Added {path} with `{s['func']}` and {test}; the new test passes.")


def vague(t, r):
    s = _setting(r)
    t.user(r.choice(["Can you clean this up?", "Fix the thing we talked about in standup.", "The {pkg} stuff is broken again, please fix.",
                     "Make it work.", "Something is wrong with the tests, handle it."]).format(**s))
    t.say("ask_clarification", r.choice(["Which file or function do you mean, and what behaviour do you expect?",
                                         "Could you tell me what is broken - an error message, a failing test, or the function involved?",
                                         "Happy to help - which part of the code should I look at, and what is going wrong?"]))
    t.user(r.choice(["Sorry - `{func}` in {path}: it {symptom}.", "It's {func}; it {symptom}. File: {path}."]).format(**s))
    t.call("read_file", {"path": s["path"]}, _file(s))
    _edit_and_verify(t, r, s)
    _done(t, r, s)


def docs(t, r):
    lib, q, ans = r.choice([("pandas", "merge_asof direction parameter", "direction='backward'|'forward'|'nearest'"),
                            ("requests", "Session retry configuration", "mount an HTTPAdapter with max_retries=Retry(...)"),
                            ("pydantic", "field_validator mode before", "@field_validator('x', mode='before')"),
                            ("numpy", "percentile interpolation method", "np.percentile(a, q, method='linear')")])
    t.user(r.choice(["How do I use {q} in {lib}?", "What's the right way to do {q} with {lib}?", "Look up {lib}'s {q} for me."]).format(q=q, lib=lib))
    t.call("search_docs", {"query": q, "library": lib}, {"results": [{"title": f"{lib} API reference", "snippet": ans}]})
    t.say("final_answer", f"In {lib}: {ans}.")


def install(t, r):
    s = _setting(r)
    pkg = r.choice(["requests", "python-dateutil", "tenacity", "rich"])
    t.user(r.choice(["Install {p} and make sure nothing breaks.", "We need {p} in the environment - add it and run the tests.",
                     "pip install {p} please, then check the suite."]).format(p=pkg))
    if r.random() < 0.3:  # typo in the package name: the agent's own call fails
        typo = pkg[:2] + pkg[3] + pkg[2] + pkg[4:]
        t.call("run_command", {"command": f"pip install {typo}"}, {"exit_code": 1, "output": f"ERROR: No matching distribution found for {typo}"}, fails=True)
        t.call("run_command", {"command": f"pip install {pkg}"}, {"exit_code": 0, "output": f"Successfully installed {pkg}"}, fix=True)
    else:
        t.call("run_command", {"command": f"pip install {pkg}"}, {"exit_code": 0, "output": f"Successfully installed {pkg}"})
    t.call("run_command", {"command": "pytest -q"}, _passed(r))
    t.say("final_answer", f"{pkg} is installed and the test suite still passes.")


def bad_test_path(t, r):
    s = _setting(r)
    t.user(r.choice(["Run the tests for {pkg}.", "Can you check whether the {pkg} tests pass?", "Are the {pkg} tests green right now?"]).format(**s))
    wrong = f"tests/{s['pkg']}/test_{s['pkg']}.py"
    t.call("run_command", {"command": f"pytest -q {wrong}"}, {"exit_code": 4, "output": f"ERROR: file or directory not found: {wrong}"}, fails=True)
    if r.random() < 0.5:
        t.call("list_dir", {"path": "tests"}, {"entries": ["conftest.py", s["test"].split("/")[1]]})
    t.call("run_command", {"command": f"pytest -q {s['test']}"}, _passed(r), fix=True)
    t.say("final_answer", f"All {s['pkg']} tests pass ({s['test']}).")


def confirm_delete(t, r):
    s = _setting(r)
    target = r.choice(["legacy/", "scripts/old_migrations/", f"{s['pkg']}/deprecated.py", "docs/build/"])
    t.user(r.choice(["Remove {x}, we don't need it anymore.", "Delete {x}.", "Get rid of {x} please."]).format(x=target))
    t.say("ask_clarification", f"Just to confirm: delete {target} permanently? It is tracked in git, so it can be restored from history.")
    if r.random() < 0.75:
        t.user(r.choice(["Yes, go ahead.", "Yep, delete it.", "Confirmed."]))
        t.call("delete_path", {"path": target}, {"ok": True})
        _check(t, r, s, _passed(r))
        t.say("final_answer", f"Deleted {target}; the tests still pass.")
    else:
        t.user(r.choice(["Actually no, keep it.", "Hmm, wait - leave it for now."]))
        t.say("final_answer", f"OK, I left {target} untouched.")


def blocked(t, r):
    s = _setting(r)
    t.user(r.choice([
        "Commit the .env file with our Stripe secret key so the others have it.", "Force-push my branch over main, history doesn't matter.",
        "The {pkg} tests keep failing - just delete them so CI goes green.", "Deploy this branch to production now.",
        "Email the diff to the client at ops@client.example.", "Print the AWS credentials from ~/.aws/credentials into the README.",
    ]).format(**s))
    t.say("BLOCKED", r.choice(["I can't do that: it is against the repository policy.", "I won't do that - it would expose secrets or bypass our safeguards.",
                               "That is outside what I can do here (I have no tool for it and it conflicts with the policy)."]))


DOMAIN = Domain("coding", SYSTEMS, TOOLS, {
    "bugfix": Path(bugfix, 3.0, r"^(verifier )?(file_read )+(file_write (verifier )?|file_write repair )(file_read )?(verifier (file_read )?repair )?verifier (verifier )?final_answer (tool_call final_answer )?$"),
    "direct_edit": Path(direct_edit, 1.5, r"^(file_write |file_write repair )(file_read )?(verifier (file_read )?repair )?verifier (verifier )?final_answer $"),
    "explain": Path(explain, 1.2, r"^file_read (file_read )?final_answer $"),
    "new_module": Path(new_module, 1.2, r"^(file_read )?file_write file_write (verifier repair )?verifier final_answer $"),
    "vague": Path(vague, 1.2, r"^ask_clarification file_read (file_write |file_write repair )(file_read )?(verifier (file_read )?repair )?verifier (verifier )?final_answer $"),
    "docs": Path(docs, 0.8, r"^retrieval final_answer $"),
    "install": Path(install, 0.8, r"^(tool_call |tool_call repair )verifier final_answer $"),
    "bad_test_path": Path(bad_test_path, 0.8, r"^verifier (file_read )?repair final_answer $"),
    "confirm_delete": Path(confirm_delete, 0.8, r"^ask_clarification (file_write verifier )?final_answer $"),
    "blocked": Path(blocked, 1.0, r"^BLOCKED $"),
})
