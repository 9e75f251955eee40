"""Flight-booking trajectories where the same search result leads to different next actions.

The label after a ``search_flights`` result depends on what the user asked, not on the result's
text: "what flights are there" -> ``final_answer``; "book the cheapest" -> ``tool_call``; two
equally good options -> ``ask_clarification``; a party larger than the policy allows -> ``BLOCKED``.
A booking that fails (fare gone, card declined) opens a failure: the corrected booking is
``repair``; ``validate_itinerary`` after a booking checks the agent's own work (``verifier``).
"""

from __future__ import annotations

from specact.data.synthetic import Domain, Path, register, tool

TOOLS = [
    tool("search_flights", "Search flights between two airports on a date.", {"origin": ("string", "IATA code, e.g. SFO."),
         "destination": ("string", "IATA code."), "date": ("string", "YYYY-MM-DD."), "passengers": ("integer", "Travellers.")},
         ["origin", "destination", "date"]),
    tool("get_booking", "Look up a booking by its reference.", {"reference": ("string", "6-character booking reference.")}, ["reference"]),
    tool("get_fare_rules", "Read the fare rules (changes, refunds) of a fare class.", {"fare_class": ("string", "e.g. Y, M, Q.")}, ["fare_class"]),
    tool("book_flight", "Book a flight for the travellers on file.", {"flight_id": ("string", "Flight id from a search."),
         "passengers": ("integer", "Travellers."), "payment": ("string", "Card on file, e.g. visa_4242.")}, ["flight_id", "passengers"]),
    tool("cancel_booking", "Cancel a booking.", {"reference": ("string", "Booking reference.")}, ["reference"]),
    tool("validate_itinerary", "Check a booking against the traveller profile (names, passports, connections).",
         {"reference": ("string", "Booking reference.")}, ["reference"]),
]
register({"search_flights": "retrieval", "get_booking": "retrieval", "get_fare_rules": "retrieval", "book_flight": "tool_call",
          "cancel_booking": "tool_call", "validate_itinerary": "verifier"})

POLICY = ("Policy: at most 6 travellers per booking; confirm before cancelling; never book for someone whose profile is not on "
          "file; group and charter requests go to the travel desk.")
SYSTEMS = [
    "You are the travel assistant of Acme Corp. Book, change and look up flights for employees. " + POLICY,
    "Corporate travel agent bot (Acme). Tools: flight search, booking, fare rules. " + POLICY,
    "Acme travel desk assistant - be brief. " + POLICY,
]
ROUTES = [("SFO", "JFK", "San Francisco", "New York"), ("BOS", "ORD", "Boston", "Chicago"), ("SEA", "LAX", "Seattle", "Los Angeles"),
          ("AUS", "DEN", "Austin", "Denver"), ("LHR", "AMS", "London", "Amsterdam"), ("MUC", "CDG", "Munich", "Paris")]
DATES = ["2025-06-03", "2025-06-11", "2025-06-19", "2025-07-02", "2025-07-15", "2025-08-08"]
CARDS = ["visa_4242", "amex_1005", "mc_5454"]


def _flights(r, o, d, date, n=3, tie=False):
    out = []
    for k in range(n):
        dep = f"{r.randint(6, 20):02d}:{r.choice(['05', '20', '35', '50'])}"
        out.append({"flight_id": f"{r.choice(['UA', 'DL', 'AA', 'BA', 'LH'])}{r.randint(100, 2999)}", "depart": f"{date}T{dep}",
                    "price": r.choice([189, 214, 249, 298, 342, 415]) + 10 * k, "stops": r.choice([0, 0, 1])})
    if tie:
        out[1]["price"] = out[0]["price"] = min(f["price"] for f in out)
        out[0]["stops"] = out[1]["stops"] = 0
    return out


def _search(t, r, o, d, date, pax=1, tie=False):
    flights = _flights(r, o, d, date, tie=tie)
    t.call("search_flights", {"origin": o, "destination": d, "date": date, "passengers": pax}, {"flights": flights, "currency": "USD"})
    return sorted(flights, key=lambda f: (f["price"], f["depart"]))


def _ask_route(r, o_city, d_city, date, verb):
    return r.choice(["{v} a flight from {o} to {d} on {dt}.", "I need to get from {o} to {d} on {dt} - {v2} something?",
                     "{o} -> {d}, {dt}. {v} it.", "Can you {v3} a seat {o} to {d} for {dt}?", "Need {o} to {d} on {dt}, please {v3} the cheapest."]
                    ).format(v=verb.capitalize(), v2=verb, v3=verb, o=o_city, d=d_city, dt=date)


def browse(t, r):
    o, d, oc, dc = r.choice(ROUTES)
    date = r.choice(DATES)
    t.user(r.choice(["What flights are there from {o} to {d} on {dt}?", "Show me options {o} to {d}, {dt}.", "Any nonstops {o}-{d} on {dt}?",
                     "How much is {o} to {d} on {dt} roughly?", "just looking: {o} to {d} {dt}, what's available"]).format(o=oc, d=dc, dt=date))
    best = _search(t, r, o, d, date)[0]
    t.say("final_answer", f"The cheapest is {best['flight_id']} at {best['depart'][11:]} for ${best['price']}; want me to book it?")


def book(t, r):
    o, d, oc, dc = r.choice(ROUTES)
    date = r.choice(DATES)
    t.user(_ask_route(r, oc, dc, date, r.choice(["book", "reserve", "get me"])))
    best = _search(t, r, o, d, date)[0]
    ref = "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    card = r.choice(CARDS)
    if r.random() < 0.35:  # the fare sells out / the card is declined: the agent's own booking failed
        err = r.choice([f"fare for {best['flight_id']} no longer available", f"payment declined for card {card}"])
        t.call("book_flight", {"flight_id": best["flight_id"], "passengers": 1, "payment": card}, {"error": err}, fails=True)
        if "fare" in err:
            best = _search(t, r, o, d, date)[1]  # look again (a lookup, still retrieval), then the corrected booking
            t.call("book_flight", {"flight_id": best["flight_id"], "passengers": 1, "payment": card}, {"reference": ref, "status": "confirmed"}, fix=True)
        else:
            card = r.choice([c for c in CARDS if c != card])
            t.call("book_flight", {"flight_id": best["flight_id"], "passengers": 1, "payment": card}, {"reference": ref, "status": "confirmed"}, fix=True)
    else:
        t.call("book_flight", {"flight_id": best["flight_id"], "passengers": 1, "payment": card}, {"reference": ref, "status": "confirmed"})
    if r.random() < 0.5:
        t.call("validate_itinerary", {"reference": ref}, {"reference": ref, "valid": True, "issues": []})
    t.say("final_answer", f"Booked {best['flight_id']} ({ref}) for ${best['price']}.")


def tie(t, r):
    o, d, oc, dc = r.choice(ROUTES)
    date = r.choice(DATES)
    t.user(_ask_route(r, oc, dc, date, "book"))
    a, b = _search(t, r, o, d, date, tie=True)[:2]
    t.say("ask_clarification", f"Two nonstops cost ${a['price']}: {a['flight_id']} at {a['depart'][11:]} and {b['flight_id']} at "
          f"{b['depart'][11:]}. Which one?")
    pick = r.choice([a, b])
    t.user(r.choice(["the {h} one", "{f} please", "{h} works"]).format(h=pick["depart"][11:], f=pick["flight_id"]))
    t.call("book_flight", {"flight_id": pick["flight_id"], "passengers": 1}, {"reference": "QX7" + str(r.randint(100, 999)), "status": "confirmed"})
    t.say("final_answer", f"Done - {pick['flight_id']} is booked.")


def group(t, r):
    o, d, oc, dc = r.choice(ROUTES)
    date, pax = r.choice(DATES), r.choice([8, 9, 12, 15])
    t.user(r.choice(["Book {n} seats {o} to {d} on {dt} for the sales offsite.", "We are {n} people flying {o}-{d} {dt}, book us all.",
                     "Get the whole team ({n}) on a flight from {o} to {d}, {dt}."]).format(n=pax, o=oc, d=dc, dt=date))
    if r.random() < 0.5:  # the search is allowed, the booking is not
        _search(t, r, o, d, date, pax=pax)
    t.say("BLOCKED", r.choice([f"I can book at most 6 travellers at once; a group of {pax} goes to the travel desk.",
                               f"Groups of {pax} are handled by the travel desk under our policy - I can't book that here."]))


def missing(t, r):
    o, d, oc, dc = r.choice(ROUTES)
    date = r.choice(DATES)
    t.user(r.choice(["Book me a flight to {d}.", "I need to fly to {d} next month.", "get me to {d} asap", "Flight to {d} please."]).format(d=dc))
    t.say("ask_clarification", r.choice(["Where are you flying from, and on which date?", "Sure - from which city, and what day?"]))
    t.user(r.choice(["From {o} on {dt}.", "{o}, {dt}", "leaving {o}, {dt}"]).format(o=oc, dt=date))
    best = _search(t, r, o, d, date)[0]
    t.call("book_flight", {"flight_id": best["flight_id"], "passengers": 1}, {"reference": "ZK" + str(r.randint(1000, 9999)), "status": "confirmed"})
    t.say("final_answer", f"You're on {best['flight_id']} on {date}.")


def cancel(t, r):
    ref = "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    fare, flown = r.choice(["Y", "M", "Q"]), r.random() < 0.25
    t.user(r.choice(["Cancel booking {x}.", "Please cancel {x}, the meeting moved.", "I won't travel after all - {x}, cancel it", "Can you drop reservation {x}?"]).format(x=ref))
    t.call("get_booking", {"reference": ref}, {"reference": ref, "fare_class": fare, "status": "flown" if flown else "ticketed", "price": r.choice([214, 298, 415])})
    if flown:
        t.say("BLOCKED", f"Booking {ref} has already been flown, so it can't be cancelled.")
        return
    if r.random() < 0.5:
        t.call("get_fare_rules", {"fare_class": fare}, {"fare_class": fare, "refundable": fare == "Y", "change_fee": 0 if fare == "Y" else 75})
    t.say("ask_clarification", f"{ref} is a {fare} fare" + (" (refundable)" if fare == "Y" else " with a $75 fee") + ". Cancel it?")
    t.user(r.choice(["yes", "Yes, go ahead.", "ok cancel"]))
    t.call("cancel_booking", {"reference": ref}, {"reference": ref, "status": "cancelled"})
    t.say("final_answer", f"{ref} is cancelled.")


DOMAIN = Domain("travel", SYSTEMS, TOOLS, {
    "browse": Path(browse, 1.0, r"^retrieval final_answer $"),
    "book": Path(book, 1.6, r"^retrieval (tool_call (retrieval )?repair |tool_call )(verifier )?final_answer $"),
    "tie": Path(tie, 0.8, r"^retrieval ask_clarification tool_call final_answer $"),
    "group": Path(group, 0.7, r"^(retrieval )?BLOCKED $"),
    "missing": Path(missing, 0.8, r"^ask_clarification retrieval tool_call final_answer $"),
    "cancel": Path(cancel, 1.0, r"^retrieval (BLOCKED |(retrieval )?ask_clarification tool_call final_answer )$"),
})
