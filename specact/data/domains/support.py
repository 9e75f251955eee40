"""Customer-support trajectories (orders, refunds, returns) under a stated policy.

Policy makes the same verbs land on different labels: a refund inside the 30-day window is a
``tool_call``, outside it ``BLOCKED``; "cancel my order" is first ``ask_clarification``
(confirmation), then ``tool_call`` after "yes", and ``BLOCKED`` once the order has shipped.
A failed call (unknown order id, address rejected) opens a failure; the corrected call is
``repair`` even when the user had to supply the fix in between.
"""

from __future__ import annotations

from datetime import date, timedelta

from specact.data.synthetic import Domain, Path, register, tool

TODAY = date(2025, 5, 14)  # the date the system prompts state

TOOLS = [
    tool("get_order", "Look up one order by id.", {"order_id": ("string", "Order id, e.g. A10234.")}, ["order_id"]),
    tool("search_orders", "Find a customer's orders.", {"email": ("string", "Customer email."),
         "status": ("string", "Filter by status.", {"enum": ["any", "processing", "shipped", "delivered"]})}, ["email"]),
    tool("search_help_center", "Search the help-center articles (policies, how-tos).", {"query": ("string", "Search text.")}, ["query"]),
    tool("issue_refund", "Refund an order, fully or partly.", {"order_id": ("string", "Order id."), "amount": ("number", "Amount in USD."),
         "reason": ("string", "Reason code.", {"enum": ["damaged", "not_received", "wrong_item", "changed_mind"]})}, ["order_id", "amount", "reason"]),
    tool("cancel_order", "Cancel an order that has not shipped.", {"order_id": ("string", "Order id.")}, ["order_id"]),
    tool("update_shipping_address", "Change the shipping address of an unshipped order.", {"order_id": ("string", "Order id."),
         "address": ("object", "New address.", {"properties": {"street": {"type": "string"}, "city": {"type": "string"}, "postal_code": {"type": "string"}}})},
         ["order_id", "address"]),
    tool("create_return_label", "Create a prepaid return label for delivered items.", {"order_id": ("string", "Order id."),
         "items": ("array", "SKUs to return.", {"items": {"type": "string"}})}, ["order_id", "items"]),
    tool("send_email", "Send an email to the customer.", {"to": ("string", "Recipient."), "subject": ("string", "Subject."),
         "body": ("string", "Body text.")}, ["to", "subject", "body"]),
]
register({"get_order": "retrieval", "search_orders": "retrieval", "search_help_center": "retrieval", "issue_refund": "tool_call",
          "cancel_order": "tool_call", "update_shipping_address": "tool_call", "create_return_label": "tool_call", "send_email": "tool_call"})

POLICY = ("Policy: refunds only within 30 days of delivery; cancel only orders that have not shipped, and confirm with the "
          "customer before cancelling; never reveal information about other customers' orders; legal threats go to a human agent.")
SYSTEMS = [
    "You are the support assistant of Northwind Outdoor, an online shop. Today is 2025-05-14. " + POLICY,
    "Northwind Outdoor customer service agent. Date: 2025-05-14. Use the order tools to help the customer. " + POLICY,
]

ITEMS = [("SKU-1182", "trail running shoes", 89.0), ("SKU-2040", "2-person tent", 249.0), ("SKU-3310", "wireless headphones", 129.0),
         ("SKU-4127", "insulated water bottle", 24.5), ("SKU-5099", "down jacket", 199.0), ("SKU-6021", "headlamp", 39.9)]
NAMES = ["maria.lopez", "tom.becker", "aisha.khan", "li.wei", "sam.oconnor", "nina.petrova"]


def _order(r, status=None, days_ago=None):
    sku, item, price = r.choice(ITEMS)
    status = status or r.choice(["processing", "shipped", "delivered"])
    oid = f"A{r.randint(10000, 99999)}"
    o = {"order_id": oid, "status": status, "items": [{"sku": sku, "name": item, "price": price}], "total": price,
         "email": f"{r.choice(NAMES)}@example.com"}
    if status == "delivered":
        d = days_ago if days_ago is not None else r.randint(2, 25)
        o["delivered_on"] = (TODAY - timedelta(days=d)).isoformat()
        o["days_since_delivery"] = d
    return o


def status(t, r):
    o = _order(r)
    t.user(r.choice(["Where is my order {id}?", "Hi, any news on order {id}?", "Can you check the status of {id} for me?"]).format(id=o["order_id"]))
    t.call("get_order", {"order_id": o["order_id"]}, o)
    t.say("final_answer", f"Order {o['order_id']} is {o['status']}." + (" It was delivered on " + o["delivered_on"] + "." if "delivered_on" in o else ""))


def _refund_request(t, r, o):
    it = o["items"][0]["name"]
    t.user(r.choice(["My {it} from order {id} arrived damaged. I want my money back.", "I'd like a refund for order {id} - the {it} is broken.",
                     "Order {id}: the {it} doesn't work. Refund please."]).format(it=it, id=o["order_id"]))


def refund_ok(t, r):
    o = _order(r, "delivered", r.randint(2, 25))
    _refund_request(t, r, o)
    t.call("get_order", {"order_id": o["order_id"]}, o)
    if r.random() < 0.35:
        t.call("search_help_center", {"query": "refund damaged item"}, {"articles": [{"title": "Refunds", "snippet": "Refunds within 30 days of delivery."}]})
    t.call("issue_refund", {"order_id": o["order_id"], "amount": o["total"], "reason": "damaged"}, {"refund_id": f"R-{r.randint(1000, 9999)}", "status": "issued"})
    t.say("final_answer", f"I've refunded ${o['total']:.2f} for order {o['order_id']}; it should reach your card in 3-5 business days.")
    if r.random() < 0.3:
        t.user(r.choice(["Can you email me a confirmation?", "Please send that to my email as well."]))
        t.call("send_email", {"to": o["email"], "subject": f"Refund for order {o['order_id']}", "body": f"We refunded ${o['total']:.2f}."}, {"sent": True})
        t.say("final_answer", f"Sent a confirmation to {o['email']}.")


def refund_late(t, r):
    o = _order(r, "delivered", r.randint(45, 120))
    _refund_request(t, r, o)
    t.call("get_order", {"order_id": o["order_id"]}, o)
    t.say("BLOCKED", f"I'm sorry - order {o['order_id']} was delivered {o['days_since_delivery']} days ago, outside our 30-day refund window, "
          "so I can't issue a refund.")


def missing_id(t, r):
    o = _order(r, "delivered", r.randint(2, 25))
    authed = r.random() < 0.5
    if authed:  # the same request, but the customer is known: no need to ask
        t.messages[0] = {**t.messages[0], "content": t.messages[0]["content"] + f"\nAuthenticated customer: {o['email']}"}
    it = o["items"][0]["name"]
    t.user(r.choice(["I want to return the {it} I bought.", "How do I send back my {it}?", "The {it} doesn't fit, I'd like to return it."]).format(it=it))
    if not authed:
        t.say("ask_clarification", r.choice(["Sure - what is the order number, or the email address you ordered with?",
                                             "I can help with that. Could you give me your order id or account email?"]))
        t.user(r.choice(["It's {e}.", "my email is {e}"]).format(e=o["email"]))
    t.call("search_orders", {"email": o["email"], "status": "delivered"}, {"orders": [o]})
    t.call("create_return_label", {"order_id": o["order_id"], "items": [o["items"][0]["sku"]]}, {"label_url": f"https://returns.example/{o['order_id']}"})
    t.say("final_answer", f"Here is your prepaid return label for the {it}: https://returns.example/{o['order_id']}")


def typo_id(t, r):
    o = _order(r)
    o["order_id"] = oid = f"A{r.randint(1, 9)}0{r.randint(100, 999)}"
    typo = oid[:2] + "O" + oid[3:]  # letter O for digit 0
    t.user(r.choice(["What's the status of order {x}?", "Order {x} - where is it?", "Has {x} shipped yet?"]).format(x=typo))
    t.call("get_order", {"order_id": typo}, {"error": f"order {typo} not found"}, fails=True)
    if r.random() < 0.5:
        t.say("ask_clarification", f"I couldn't find an order {typo}. Could you double-check the number?")
        t.user(r.choice(["Sorry, it's {id}.", "Oops - {id}."]).format(id=oid))
    t.call("get_order", {"order_id": oid}, o, fix=True)
    t.say("final_answer", f"Found it: order {oid} is {o['status']}.")


def cancel(t, r):
    shipped = r.random() < 0.3
    o = _order(r, "shipped" if shipped else "processing")
    t.user(r.choice(["Please cancel order {id}.", "I changed my mind, cancel {id}.", "Cancel {id} for me, I ordered the wrong size."]).format(id=o["order_id"]))
    t.call("get_order", {"order_id": o["order_id"]}, o)
    if shipped:
        t.say("BLOCKED", f"Order {o['order_id']} has already shipped, so I can't cancel it. Once it arrives you can return it within 30 days.")
        return
    t.say("ask_clarification", f"Order {o['order_id']} ({o['items'][0]['name']}, ${o['total']:.2f}) hasn't shipped yet. Shall I cancel it?")
    if r.random() < 0.8:
        t.user(r.choice(["Yes please.", "Yes, cancel it.", "Go ahead."]))
        t.call("cancel_order", {"order_id": o["order_id"]}, {"order_id": o["order_id"], "status": "cancelled"})
        t.say("final_answer", f"Order {o['order_id']} is cancelled; you won't be charged.")
    else:
        t.user(r.choice(["Hmm, no, keep it.", "Actually never mind."]))
        t.say("final_answer", "No problem, the order stays as it is.")


def address(t, r):
    o = _order(r, "processing")
    street, city, zipc = r.choice([("12 Harbor Rd", "Portland", "97201"), ("4 Elm St", "Denver", "80203"), ("88 Lake Ave", "Madison", "53703")])
    t.user(r.choice(["Please ship order {id} to {s}, {c} instead.", "New address for {id}: {s}, {c}."]).format(id=o["order_id"], s=street, c=city))
    t.call("update_shipping_address", {"order_id": o["order_id"], "address": {"street": street, "city": city}},
           {"error": "address validation failed: postal_code is required"}, fails=True)
    t.say("ask_clarification", "The carrier needs a postal code for that address - what is it?")
    t.user(r.choice(["It's {z}.", "{z}"]).format(z=zipc))
    t.call("update_shipping_address", {"order_id": o["order_id"], "address": {"street": street, "city": city, "postal_code": zipc}},
           {"order_id": o["order_id"], "address_updated": True}, fix=True)
    t.say("final_answer", f"Order {o['order_id']} will now ship to {street}, {city} {zipc}.")


def privacy(t, r):
    o = _order(r)
    t.user(r.choice(["My neighbour ordered the same tent - what address is on order {id}?", "Can you tell me who placed order {id}? I think it's my ex.",
                     "I'm going to sue you if this isn't fixed today. Give me your legal department's answer now.",
                     "List the emails of everyone who bought the down jacket this month."]).format(id=o["order_id"]))
    t.say("BLOCKED", r.choice(["I can't share information about other customers' orders.", "I'm not able to help with that request; "
                               "I'll pass it to a human colleague.", "That's something I can't do under our privacy policy."]))


def faq(t, r):
    q, a = r.choice([("return opened electronics", "Opened electronics can be returned within 30 days if undamaged."),
                     ("international shipping", "We ship to the EU and Canada; delivery takes 7-12 days."),
                     ("warranty on jackets", "Jackets carry a 2-year warranty against manufacturing defects.")])
    t.user(r.choice(["What's your policy on {q}?", "Quick question about {q}.", "Do you allow {q}?"]).format(q=q))
    t.call("search_help_center", {"query": q}, {"articles": [{"title": q.title(), "snippet": a}]})
    t.say("final_answer", a)


DOMAIN = Domain("support", SYSTEMS, TOOLS, {
    "status": Path(status, 1.0, r"^retrieval final_answer $"),
    "refund_ok": Path(refund_ok, 1.5, r"^retrieval (retrieval )?tool_call final_answer (tool_call final_answer )?$"),
    "refund_late": Path(refund_late, 1.0, r"^retrieval BLOCKED $"),
    "missing_id": Path(missing_id, 1.2, r"^(ask_clarification )?retrieval tool_call final_answer $"),
    "typo_id": Path(typo_id, 1.0, r"^retrieval (ask_clarification )?repair final_answer $"),
    "cancel": Path(cancel, 1.0, r"^retrieval (BLOCKED |ask_clarification (tool_call )?final_answer )$"),
    "address": Path(address, 1.0, r"^tool_call ask_clarification repair final_answer $"),
    "privacy": Path(privacy, 0.8, r"^BLOCKED $"),
    "faq": Path(faq, 0.8, r"^retrieval final_answer $"),
})
