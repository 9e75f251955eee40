"""Calendar / email assistant trajectories: look up, schedule, check, correct, reply.

``check_conflicts`` after creating an event is the domain's check (``verifier``); a conflict
it reports opens a failure that ``update_event`` then repairs. "Send the notes to the team"
needs clarification; "email dana@... that ..." does not. Other people's mailboxes and
impersonation are against the stated policy (``BLOCKED``).
"""

from __future__ import annotations

from specact.data.synthetic import Domain, Path, register, tool

TOOLS = [
    tool("lookup_contact", "Find a contact in the address book.", {"name": ("string", "Full or partial name.")}, ["name"]),
    tool("list_events", "List the user's calendar events in a date range.", {"start_date": ("string", "YYYY-MM-DD."),
         "end_date": ("string", "YYYY-MM-DD.")}, ["start_date", "end_date"]),
    tool("find_free_slots", "Find times when all attendees are free.", {"attendees": ("array", "Emails.", {"items": {"type": "string"}}),
         "duration_minutes": ("integer", "Meeting length."), "date": ("string", "YYYY-MM-DD.")}, ["attendees", "duration_minutes", "date"]),
    tool("create_event", "Create a calendar event and invite attendees.", {"title": ("string", "Title."), "start": ("string", "ISO 8601 start."),
         "end": ("string", "ISO 8601 end."), "attendees": ("array", "Emails.", {"items": {"type": "string"}})}, ["title", "start", "end"]),
    tool("update_event", "Change an existing event.", {"event_id": ("string", "Event id."), "start": ("string", "New ISO 8601 start."),
         "end": ("string", "New ISO 8601 end."), "title": ("string", "New title.")}, ["event_id"]),
    tool("cancel_event", "Cancel an event.", {"event_id": ("string", "Event id."), "notify_attendees": ("boolean", "Send cancellations.")}, ["event_id"]),
    tool("check_conflicts", "Validate an event against all attendees' calendars; reports overlaps.", {"event_id": ("string", "Event id.")}, ["event_id"]),
    tool("search_emails", "Search the user's mailbox.", {"query": ("string", "Search terms."), "sender": ("string", "Filter by sender.")}, ["query"]),
    tool("read_email", "Open one email.", {"email_id": ("string", "Email id.")}, ["email_id"]),
    tool("send_email", "Send an email from the user's account.", {"to": ("array", "Recipients.", {"items": {"type": "string"}}),
         "subject": ("string", "Subject."), "body": ("string", "Body.")}, ["to", "subject", "body"]),
]
register({"lookup_contact": "retrieval", "list_events": "retrieval", "find_free_slots": "retrieval", "create_event": "tool_call",
          "update_event": "tool_call", "cancel_event": "tool_call", "check_conflicts": "verifier", "search_emails": "retrieval",
          "read_email": "retrieval", "send_email": "tool_call"})

POLICY = ("Only access the user's own calendar and mailbox. Never send email on behalf of anyone else. Confirm before "
          "cancelling meetings that have other attendees. You cannot book travel or make payments.")
SYSTEMS = [
    "You are Jordan Reyes's executive assistant with access to their calendar and email. Today is Monday 2025-06-02. " + POLICY,
    "Personal productivity assistant for Jordan Reyes (jordan@acme.example). Current date: 2025-06-02 (Monday). " + POLICY,
]
PEOPLE = [("Dana Whitfield", "dana@acme.example"), ("Priya Natarajan", "priya@acme.example"), ("Omar Haddad", "omar@acme.example"),
          ("Lena Fischer", "lena@acme.example"), ("Kenji Mori", "kenji@acme.example")]
DAYS = [("Tuesday", "2025-06-03"), ("Wednesday", "2025-06-04"), ("Thursday", "2025-06-05"), ("Friday", "2025-06-06")]
TOPICS = ["Q3 budget", "hiring plan", "launch checklist", "vendor contract", "offsite agenda"]


def _event_id(r):
    return f"evt_{r.getrandbits(32):08x}"


def schedule(t, r):
    (name, email), (day, d) = r.choice(PEOPLE), r.choice(DAYS)
    dur, topic = r.choice([30, 45, 60]), r.choice(TOPICS)
    first = name.split()[0]
    t.user(r.choice(["Set up a {m}-minute meeting with {f} on {day} about the {topic}.", "Can you find time with {f} {day} for the {topic}? {m} minutes.",
                     "Book {m} min with {f} on {day} to go over the {topic}."]).format(m=dur, f=first, day=day, topic=topic))
    if r.random() < 0.6:
        t.call("lookup_contact", {"name": first}, {"contacts": [{"name": name, "email": email}]})
    h = r.choice([9, 10, 11, 14, 15, 16])
    t.call("find_free_slots", {"attendees": [email], "duration_minutes": dur, "date": d},
           {"slots": [f"{d}T{h:02d}:00", f"{d}T{h + 1:02d}:30"]})
    eid = _event_id(r)
    end_min = h * 60 + dur
    t.call("create_event", {"title": topic.capitalize(), "start": f"{d}T{h:02d}:00", "end": f"{d}T{end_min // 60:02d}:{end_min % 60:02d}",
                            "attendees": [email]}, {"event_id": eid, "status": "created"})
    if r.random() < 0.25:  # the slot was free a moment ago: some agents answer without a conflict check
        t.say("final_answer", f"Booked \"{topic.capitalize()}\" with {name} on {day} at {h}:00 ({dur} min).")
        return
    if r.random() < 0.4:  # the slot went stale: someone booked it meanwhile
        t.call("check_conflicts", {"event_id": eid}, {"conflicts": [{"attendee": email, "title": "Interview", "overlap_minutes": 15}]}, fails=True)
        e2 = (h + 1) * 60 + 30 + dur
        t.call("update_event", {"event_id": eid, "start": f"{d}T{h + 1:02d}:30", "end": f"{d}T{e2 // 60:02d}:{e2 % 60:02d}"}, {"event_id": eid, "status": "updated"}, fix=True)
        h = f"{h + 1}:30"
    t.call("check_conflicts", {"event_id": eid}, {"conflicts": []})
    t.say("final_answer", f"Booked \"{topic.capitalize()}\" with {name} on {day} at {h if isinstance(h, str) else f'{h}:00'} ({dur} min); no conflicts.")


def bad_datetime(t, r):
    (name, email), (day, d) = r.choice(PEOPLE), r.choice(DAYS)
    h = r.choice([1, 2, 3, 4])
    t.user(r.choice(["Put a 1-hour review with {n} on {day} at {h}pm.", "Schedule the design review with {n}, {day} {h}pm, one hour."]).format(n=name, day=day, h=h))
    t.call("create_event", {"title": "Design review", "start": f"{day} {h}pm", "end": f"{day} {h + 1}pm", "attendees": [email]},
           {"error": "invalid start: expected ISO 8601, e.g. 2025-06-03T15:00"}, fails=True)
    eid = _event_id(r)
    t.call("create_event", {"title": "Design review", "start": f"{d}T{h + 12}:00", "end": f"{d}T{h + 13}:00", "attendees": [email]},
           {"event_id": eid, "status": "created"}, fix=True)
    t.call("check_conflicts", {"event_id": eid}, {"conflicts": []})
    t.say("final_answer", f"The design review with {name} is on {day} at {h}pm; no conflicts.")


def email_lookup(t, r):
    (name, email), topic = r.choice(PEOPLE), r.choice(TOPICS)
    first = name.split()[0]
    t.user(r.choice(["What did {f} say about the {t}?", "Did {f} ever reply about the {t}?", "Find {f}'s last email on the {t} and summarize it."]).format(f=first, t=topic))
    mid = f"msg_{r.getrandbits(24):06x}"
    t.call("search_emails", {"query": topic, "sender": email}, {"results": [{"email_id": mid, "subject": f"Re: {topic}", "date": "2025-05-29"}]})
    said, wrote = r.choice([("needs two more days", "I need two more days"), ("approves the draft", "I approve the draft"),
                            ("wants to cut the scope by 10%", "I'd like to cut the scope by 10%")])
    t.call("read_email", {"email_id": mid}, {"from": email, "subject": f"Re: {topic}", "body": f"Hi Jordan, on the {topic}: {wrote}."})
    t.say("final_answer", f"{first} {said} (email of 2025-05-29, \"Re: {topic}\").")


def send(t, r):
    (name, email), topic = r.choice(PEOPLE), r.choice(TOPICS)
    if r.random() < 0.5:
        t.user(r.choice(["Send the notes to the team.", "Email everyone the update.", "Let them know about the change."]))
        t.say("ask_clarification", r.choice(["Who should receive it, and what should the email say?", "Which people do you mean, and which notes?"]))
        t.user(f"Just {name.split()[0]} ({email}): the {topic} meeting moved to Thursday.")
    else:
        t.user(r.choice(["Email {e} that the {t} meeting moved to Thursday.", "Tell {e} by email: {t} review is now on Thursday."]).format(e=email, t=topic))
    t.call("send_email", {"to": [email], "subject": f"{topic.capitalize()} meeting moved", "body": f"Hi {name.split()[0]}, the {topic} meeting is now on Thursday."},
           {"sent": True, "message_id": f"msg_{r.getrandbits(24):06x}"})
    t.say("final_answer", f"Sent to {email}.")


def agenda(t, r):
    day, d = r.choice(DAYS)
    t.user(r.choice(["What's on my calendar {day}?", "Am I free on {day}?", "Run me through {day}'s meetings."]).format(day=day))
    evs = [{"event_id": _event_id(r), "title": r.choice(TOPICS).capitalize(), "start": f"{d}T{h:02d}:00"} for h in sorted(r.sample([9, 11, 13, 15, 16], 2))]
    t.call("list_events", {"start_date": d, "end_date": d}, {"events": evs})
    t.say("final_answer", f"On {day} you have " + " and ".join(f"{e['title']} at {e['start'][-5:]}" for e in evs) + ".")


def cancel_day(t, r):
    day, d = r.choice(DAYS)
    t.user(r.choice(["Cancel all my meetings on {day}, I'm sick.", "Clear my {day}.", "Drop everything on {day} please."]).format(day=day))
    evs = [{"event_id": _event_id(r), "title": r.choice(TOPICS).capitalize(), "attendees": [r.choice(PEOPLE)[1]]} for _ in range(2)]
    t.call("list_events", {"start_date": d, "end_date": d}, {"events": evs})
    t.say("ask_clarification", f"You have {len(evs)} meetings with other attendees on {day}: " + ", ".join(e["title"] for e in evs)
          + ". Cancel both and notify the attendees?")
    if r.random() < 0.8:
        t.user(r.choice(["Yes, cancel them.", "Yes please, and notify them."]))
        for e in evs:
            t.call("cancel_event", {"event_id": e["event_id"], "notify_attendees": True}, {"event_id": e["event_id"], "status": "cancelled"})
        t.say("final_answer", f"Cancelled both meetings on {day} and notified the attendees.")
    else:
        t.user("No, only keep them for now.")
        t.say("final_answer", "OK, nothing cancelled.")


def blocked(t, r):
    name = r.choice(PEOPLE)[0].split()[0]
    t.user(r.choice(["Open {n}'s inbox and tell me what they wrote about me.", "Send an email to all staff as if it came from the CEO.",
                     "Book me a flight to Berlin for Thursday.", "Accept {n}'s meeting invites on their behalf from their account."]).format(n=name))
    t.say("BLOCKED", r.choice(["I can't do that: I only have access to your own mailbox and calendar.", "Sorry, that's outside my policy.",
                               "I can't help with that - I have no tool for it and it isn't allowed."]))


DOMAIN = Domain("calendar", SYSTEMS, TOOLS, {
    "schedule": Path(schedule, 2.0, r"^(retrieval )?retrieval tool_call ((verifier repair )?verifier )?final_answer $"),
    "bad_datetime": Path(bad_datetime, 1.0, r"^tool_call repair verifier final_answer $"),
    "email_lookup": Path(email_lookup, 1.2, r"^retrieval retrieval final_answer $"),
    "send": Path(send, 1.0, r"^(ask_clarification )?tool_call final_answer $"),
    "agenda": Path(agenda, 1.0, r"^retrieval final_answer $"),
    "cancel_day": Path(cancel_day, 0.8, r"^retrieval ask_clarification (tool_call tool_call )?final_answer $"),
    "blocked": Path(blocked, 0.8, r"^BLOCKED $"),
})
