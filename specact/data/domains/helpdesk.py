"""HR / IT helpdesk trajectories: the same lookup answered, acted on, or refused by what was asked.

``get_leave_balance`` is followed by ``final_answer`` ("how many days do I have?"), by
``tool_call`` ("book Friday off") or by ``BLOCKED`` (no days left: policy forbids negative
balances). Account work is checked with ``test_login`` (``verifier``); a failed check of the
agent's own account setup is corrected by ``repair``. Another employee's private data, or
admin rights without a ticket, is ``BLOCKED``; a vague request is ``ask_clarification``.
"""

from __future__ import annotations

from specact.data.synthetic import Domain, Path, register, tool

TOOLS = [
    tool("lookup_employee", "Find an employee by name or email.", {"query": ("string", "Name or email.")}, ["query"]),
    tool("get_leave_balance", "Remaining leave days of an employee.", {"employee_id": ("string", "e.g. E1042."),
         "kind": ("string", "Leave kind.", {"enum": ["vacation", "sick", "parental"]})}, ["employee_id"]),
    tool("submit_leave_request", "File a leave request.", {"employee_id": ("string", "Employee id."), "start": ("string", "YYYY-MM-DD."),
         "end": ("string", "YYYY-MM-DD."), "kind": ("string", "Leave kind.")}, ["employee_id", "start", "end"]),
    tool("search_policy", "Search the HR and IT policy handbook.", {"query": ("string", "Search text.")}, ["query"]),
    tool("create_account", "Create an account in a system for an employee.", {"employee_id": ("string", "Employee id."),
         "system": ("string", "e.g. github, jira, vpn."), "groups": ("array", "Groups.", {"items": {"type": "string"}})}, ["employee_id", "system"]),
    tool("reset_password", "Send a password-reset link to the employee's verified email.", {"employee_id": ("string", "Employee id.")}, ["employee_id"]),
    tool("test_login", "Try a login with the account's test credentials to confirm it works.", {"employee_id": ("string", "Employee id."),
         "system": ("string", "System.")}, ["employee_id", "system"]),
]
register({"lookup_employee": "retrieval", "get_leave_balance": "retrieval", "submit_leave_request": "tool_call",
          "search_policy": "retrieval", "create_account": "tool_call", "reset_password": "tool_call", "test_login": "verifier"})

POLICY = ("Rules: employees may see only their own records; leave cannot go below zero days; admin rights need an approved ticket; "
          "verify identity (employee id) before any account change.")
SYSTEMS = [
    "You are Globex's people & IT helpdesk assistant. " + POLICY,
    "Helpdesk agent for Globex employees (HR + IT). " + POLICY + " Keep answers short.",
]
PEOPLE = [("Priya Natarajan", "E1042"), ("Jonas Weber", "E2210"), ("Chloe Martin", "E3307"), ("Diego Alvarez", "E4419"),
          ("Hana Sato", "E5120"), ("Kwame Mensah", "E6033")]
DAYS = [("2025-06-06", "2025-06-06"), ("2025-07-14", "2025-07-18"), ("2025-08-01", "2025-08-04"), ("2025-09-22", "2025-09-26")]


def _me(t, r):
    name, eid = r.choice(PEOPLE)
    t.messages[0] = {**t.messages[0], "content": t.messages[0]["content"] + f"\nSigned-in employee: {name} ({eid})"}
    return name, eid


def balance(t, r):
    _, eid = _me(t, r)
    kind = r.choice(["vacation", "sick"])
    t.user(r.choice(["How many {k} days do I have left?", "what's my {k} balance", "Do I still have {k} days this year?",
                     "remaining {k} leave?", "Can you check my {k} days?"]).format(k=kind))
    days = r.randint(0, 18)
    t.call("get_leave_balance", {"employee_id": eid, "kind": kind}, {"employee_id": eid, "kind": kind, "days_left": days, "year": 2025})
    t.say("final_answer", f"You have {days} {kind} days left for 2025.")


def leave(t, r):
    _, eid = _me(t, r)
    start, end = r.choice(DAYS)
    t.user(r.choice(["Book me off from {s} to {e}.", "I'd like vacation {s} - {e}, please file it.", "Put in leave for {s} to {e}",
                     "Taking {s} to {e} off, can you submit that?", "vacation request {s}..{e} pls"]).format(s=start, e=end))
    days = r.choice([0, 0, 3, 7, 12, 15])
    t.call("get_leave_balance", {"employee_id": eid, "kind": "vacation"}, {"employee_id": eid, "kind": "vacation", "days_left": days, "year": 2025})
    if days == 0:
        t.say("BLOCKED", "You have no vacation days left, and leave can't go below zero - I can't file this request.")
        return
    t.call("submit_leave_request", {"employee_id": eid, "start": start, "end": end, "kind": "vacation"},
           {"request_id": f"LR-{r.randint(1000, 9999)}", "status": "pending_approval"})
    t.say("final_answer", f"Filed: vacation {start} to {end}, waiting for your manager's approval.")


def vague_leave(t, r):
    _, eid = _me(t, r)
    t.user(r.choice(["I need some time off.", "Can I take a few days next month?", "book me some holiday", "I want to go on leave"]))
    t.say("ask_clarification", r.choice(["Which dates, and is it vacation or sick leave?", "Sure - from when to when?"]))
    start, end = r.choice(DAYS)
    t.user(r.choice(["{s} to {e}, vacation", "From {s} until {e}.", "vacation, {s} - {e}"]).format(s=start, e=end))
    t.call("get_leave_balance", {"employee_id": eid, "kind": "vacation"}, {"employee_id": eid, "kind": "vacation", "days_left": r.randint(5, 20), "year": 2025})
    t.call("submit_leave_request", {"employee_id": eid, "start": start, "end": end, "kind": "vacation"}, {"request_id": f"LR-{r.randint(1000, 9999)}", "status": "pending_approval"})
    t.say("final_answer", "Your request is filed and pending approval.")


def onboard(t, r):
    name, eid = r.choice(PEOPLE)
    system = r.choice(["github", "jira", "vpn"])
    t.user(r.choice(["New hire {n} starts Monday - set up their {s} account.", "Please create a {s} login for {n}.",
                     "{n} needs {s} access (team: platform)."]).format(n=name, s=system))
    t.call("lookup_employee", {"query": name}, {"matches": [{"employee_id": eid, "name": name, "team": "platform"}]})
    t.call("create_account", {"employee_id": eid, "system": system, "groups": ["platform"]}, {"employee_id": eid, "system": system, "created": True})
    if r.random() < 0.4:  # the agent's setup fails its own check: a missing group
        t.call("test_login", {"employee_id": eid, "system": system}, {"passed": False, "reason": "user not in group 'employees'"}, fails=True)
        t.call("create_account", {"employee_id": eid, "system": system, "groups": ["platform", "employees"]},
               {"employee_id": eid, "system": system, "updated": True}, fix=True)
    t.call("test_login", {"employee_id": eid, "system": system}, {"passed": True})
    t.say("final_answer", f"{name}'s {system} account is ready and the test login works.")


def password(t, r):
    name, eid = r.choice(PEOPLE)
    t.user(r.choice(["I'm locked out, reset my password.", "forgot my password again", "Password reset please, I can't log in.",
                     "need a new password"]))
    t.say("ask_clarification", r.choice(["I can help - what's your employee id?", "To verify you: which employee id do you have?"]))
    typo = r.random() < 0.35
    given = eid[:-1] + str((int(eid[-1]) + 1) % 10) if typo else eid
    t.user(r.choice(["{x}", "it's {x}", "{x} I think"]).format(x=given))
    if typo:
        t.call("reset_password", {"employee_id": given}, {"error": f"employee {given} has no verified email"}, fails=True)
        t.say("ask_clarification", f"I couldn't find a verified email for {given}. Could you double-check the id?")
        t.user(r.choice(["sorry, {x}", "oops, {x}"]).format(x=eid))
        t.call("reset_password", {"employee_id": eid}, {"sent": True, "to": "verified email"}, fix=True)
    else:
        t.call("reset_password", {"employee_id": eid}, {"sent": True, "to": "verified email"})
    t.say("final_answer", "A reset link is on its way to your verified email.")


def private(t, r):
    _me(t, r)
    other = r.choice(PEOPLE)[0]
    t.user(r.choice(["What's {o}'s salary?", "How many sick days has {o} taken this year?", "Give me admin rights on prod, no ticket yet.",
                     "Show me {o}'s performance review."]).format(o=other))
    if r.random() < 0.4:
        t.call("search_policy", {"query": "access to other employees' records"}, {"results": [{"title": "Privacy", "text": "Only your own records."}]})
    t.say("BLOCKED", r.choice(["I can't share other employees' records.", "That needs an approved ticket; I can't grant it here.",
                               "Sorry, that's not something I'm allowed to do."]))


DOMAIN = Domain("helpdesk", SYSTEMS, TOOLS, {
    "balance": Path(balance, 1.0, r"^retrieval final_answer $"),
    "leave": Path(leave, 1.4, r"^retrieval (BLOCKED |tool_call final_answer )$"),
    "vague_leave": Path(vague_leave, 0.8, r"^ask_clarification retrieval tool_call final_answer $"),
    "onboard": Path(onboard, 1.2, r"^retrieval tool_call (verifier repair )?verifier final_answer $"),
    "password": Path(password, 1.0, r"^ask_clarification (tool_call ask_clarification repair |tool_call )final_answer $"),
    "private": Path(private, 0.8, r"^(retrieval )?BLOCKED $"),
})
