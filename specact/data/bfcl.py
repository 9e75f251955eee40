"""BFCL v4 multi-turn trajectories, replayed, as decision points (``shared/spec/ACTIONS.md``).

BFCL ships each multi-turn task as user turns + the gold python-call strings per turn, but
not the tool outputs. A next-action predictor must see what the agent saw, so we *replay*
the gold calls in BFCL's own environment classes (``func_source_code``) and put the real,
JSON-serialised return values into the context as ``tool`` messages.

Decision points, one per gold step:

* each gold call -> the label of its function (:data:`FUNCTION_LABELS`, every method of the
  8 classes listed explicitly; ``echo`` without ``file_name`` only prints -> ``tool_call``);
  a call whose immediately preceding observation (same turn) was an error -> ``repair``
  (BFCL's gold sequences contain no failing call, so this never fires on v4 data as shipped);
* the end of each user turn (after the last observation) -> ``final_answer``, target null
  (BFCL has no gold reply text);
* a turn with empty ground truth -> ``ask_clarification`` in ``miss_param`` (the next user
  turn supplies the missing parameter), ``BLOCKED`` in ``miss_func`` (the needed function is
  withheld until the turn named in ``missed_function``), and ``BLOCKED`` for the three turns
  base already leaves empty (an invoice for a cancelled booking: impossible with the tools).

Label decisions (spec: file_read = "reads workspace files or inspects the file tree"):
``cd`` changes only the agent's working directory, never a file, so it is ``file_read``
(file-tree navigation); ``sort``, ``wc``, ``du``, ``tail``, ``diff`` return content without
writing, so ``file_read``. Read-only lookups elsewhere (get/list/search/check/display/status,
``get_flight_cost``, ``estimate_distance``, ``verify_traveler_information``) are ``retrieval``;
conversions and calculations (MathAPI, ``compute_exchange_rate``, ``liter_to_gallon``) and
state changes (login, post, book, ``notify_price_change``, ``display_log``) are ``tool_call``.

Tools: BFCL's docs converted to JSON schema (``dict``->``object``, ``float``->``number``,
``tuple``->``array``, ``any``-> no type); BFCL's non-standard ``response`` field is dropped
(templates would print it verbatim, thousands of tokens for no decision-relevant content).
Only functions available at that step are passed: ``excluded_function`` removed throughout,
``missed_function`` removed until its turn. Assistant replies in the *history* (after a
final/clarify/blocked turn) are fixed placeholder texts, since BFCL has none.

Determinism: the environments draw ids/timestamps from ``random.Random(scenario seed)``
per instance; we build fresh instances per replay (BFCL itself caches them in ``globals()``),
so a replay is a pure function of the entry. ``datetime.now()`` only touches a private
``_last_modified`` that no method returns.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import random
import re
from copy import deepcopy
from functools import lru_cache
from pathlib import Path
from typing import Any

from specact.actions import resolve
from specact.records import validate_record

CATEGORIES = ("base", "long_context", "miss_param", "miss_func")

_ENV_PKG = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
# class -> (module in func_source_code, function-doc file in data/multi_turn_func_doc)
CLASSES = {
    "GorillaFileSystem": ("gorilla_file_system", "gorilla_file_system.json"),
    "MathAPI": ("math_api", "math_api.json"),
    "MessageAPI": ("message_api", "message_api.json"),
    "TwitterAPI": ("posting_api", "posting_api.json"),
    "TicketAPI": ("ticket_api", "ticket_api.json"),
    "TradingBot": ("trading_bot", "trading_bot.json"),
    "TravelAPI": ("travel_booking", "travel_booking.json"),
    "VehicleControlAPI": ("vehicle_control", "vehicle_control.json"),
}

_FILE_READ = "pwd ls cd cat find wc sort grep du tail diff"
_FILE_WRITE = "mkdir touch echo mv rm rmdir cp"
_RETRIEVAL = (
    "list_users get_user_id message_get_login_status view_messages_sent search_messages get_message_stats "
    "posting_get_login_status list_all_following get_tweet get_user_tweets search_tweets get_tweet_comments get_user_stats "
    "get_ticket ticket_get_login_status get_user_tickets "
    "get_current_time get_symbol_by_name get_stock_info get_order_details get_account_info trading_get_login_status "
    "get_watchlist get_order_history get_transaction_history get_available_stocks filter_stocks_by_price "
    "travel_get_login_status get_budget_fiscal_year get_flight_cost get_credit_card_balance retrieve_invoice "
    "get_booking_history list_all_airports verify_traveler_information get_nearest_airport_by_city get_all_credit_cards "
    "get_outside_temperature_from_google get_outside_temperature_from_weather_com displayCarStatus get_current_speed "
    "estimate_distance get_zipcode_based_on_city check_tire_pressure find_nearest_tire_shop"
)
_TOOL_CALL = (
    "logarithm mean standard_deviation si_unit_conversion imperial_si_conversion add subtract multiply divide power "
    "square_root absolute_value round_number percentage min_value max_value sum_values "
    "message_login send_message delete_message add_contact "
    "authenticate_twitter post_tweet retweet comment mention follow_user unfollow_user "
    "create_ticket close_ticket resolve_ticket edit_ticket ticket_login logout "
    "cancel_order place_order withdraw_funds trading_login trading_logout fund_account remove_stock_from_watchlist "
    "add_to_watchlist notify_price_change "
    "authenticate_travel register_credit_card book_flight cancel_booking compute_exchange_rate set_budget_limit "
    "purchase_insurance contact_customer_support "
    "startEngine fillFuelTank lockDoors adjustClimateControl setHeadlights activateParkingBrake pressBrakePedal "
    "releaseBrakePedal setCruiseControl display_log estimate_drive_feasibility_by_mileage liter_to_gallon "
    "gallon_to_liter set_navigation"
)
# Every public method of the 8 classes -> its spec label (a test checks the coverage).
FUNCTION_LABELS: dict[str, str] = {
    **{n: "file_read" for n in _FILE_READ.split()},
    **{n: "file_write" for n in _FILE_WRITE.split()},
    **{n: "retrieval" for n in _RETRIEVAL.split()},
    **{n: "tool_call" for n in _TOOL_CALL.split()},
}

# BFCL's classic system prompt (persona + task + multi-turn behaviour), minus its python
# output-format and function-list parts: tools travel as JSON schemas. It states when to
# point out missing parameters / unusable functions, which grounds clarify/BLOCKED steps.
SYSTEM_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
    "If none of the functions can be used, point it out. If the given question lacks the parameters required "
    "by the function, also point it out.\n\n"
    "At each turn, you should try your best to complete the tasks requested by the user within the current turn. "
    "Continue to output functions to call until you have fulfilled the user's request to the best of your ability. "
    "Once you have no more functions to call, the system will consider the current turn complete and proceed to "
    "the next turn or task."
)
# BFCL's DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC, the user turn that releases withheld functions.
ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"
# History placeholders for text turns (BFCL has no gold reply text; these are never targets).
_HISTORY_TEXT = {
    "final_answer": "Done. I have completed the requested operations.",
    "ask_clarification": "I need a bit more information to do that. Could you provide the missing details?",
    "BLOCKED": "I can't complete that request with the functions available to me.",
}
# Entries whose ground truth is misaligned with their turns (a BFCL data bug), left out.
KNOWN_BAD = {
    "multi_turn_miss_param_180": "gold calls shifted one turn later than the requests they answer",
}


def data_dir() -> Path:
    """``bfcl_eval/data``, located without importing bfcl_eval's heavy modules."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bfcl_eval is not installed (pip install --no-deps bfcl-eval)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@lru_cache(maxsize=None)
def _entries(category: str) -> tuple[dict, ...]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL multi-turn category {category!r}; allowed: {list(CATEGORIES)}")
    d = data_dir()
    qs = _read_jsonl(d / f"BFCL_v4_multi_turn_{category}.json")
    answers = {a["id"]: a["ground_truth"] for a in _read_jsonl(d / "possible_answer" / f"BFCL_v4_multi_turn_{category}.json")}
    return tuple({**q, "ground_truth": answers[q["id"]]} for q in qs)


def load_entries(category: str) -> list[dict]:
    """The category's entries, each with its ``ground_truth`` attached (deep copies)."""
    return deepcopy(list(_entries(category)))


# ---------------------------------------------------------------- tool schemas
_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def to_json_schema(node: Any) -> Any:
    """BFCL's parameter dialect -> JSON schema (recursively; property *names* untouched)."""
    if isinstance(node, list):
        return [to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "type" and isinstance(v, str):
            t = _TYPE_MAP.get(v, v)
            if t is not None:
                out[k] = t
        elif k == "properties" and isinstance(v, dict):
            out[k] = {name: to_json_schema(s) for name, s in v.items()}
        else:
            out[k] = to_json_schema(v)
    return out


def tool_spec(doc: dict) -> dict:
    params = to_json_schema(doc.get("parameters") or {})
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return {"type": "function", "function": {"name": doc["name"], "description": doc.get("description", ""), "parameters": params}}


@lru_cache(maxsize=None)
def _class_tools(cls: str) -> tuple[dict, ...]:
    return tuple(tool_spec(d) for d in _read_jsonl(data_dir() / "multi_turn_func_doc" / CLASSES[cls][1]))


# ---------------------------------------------------------------- execution
def make_envs(entry: dict) -> dict[str, Any]:
    """Fresh environment instances of the entry's classes, loaded with its initial config."""
    long_context = "long_context" in entry["id"]
    envs = {}
    for cls in entry["involved_classes"]:
        module = importlib.import_module(f"{_ENV_PKG}.{CLASSES[cls][0]}")
        inst = getattr(module, cls)()
        if hasattr(inst, "_load_scenario"):  # MathAPI is stateless and has none
            inst._load_scenario(deepcopy(entry["initial_config"].get(cls, {})), long_context=long_context)
        envs[cls] = inst
    return envs


def method_table(envs: dict[str, Any]) -> dict[str, Any]:
    """Public method name -> bound method (a later class wins a name clash, as in BFCL)."""
    table = {}
    for inst in envs.values():
        for name, fn in inspect.getmembers(inst, predicate=inspect.ismethod):
            if not name.startswith("_"):
                table[name] = fn
    return table


def parse_call(text: str) -> tuple[str, list, dict]:
    """``"mv(source='a', destination='b')"`` -> name, positional, keyword (literals only; no eval)."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain function call: {text!r}")
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    return node.func.id, args, kwargs


def call_arguments(fn, args: list, kwargs: dict) -> dict:
    """Positional arguments bound to their parameter names (targets need named arguments)."""
    if not args:
        return dict(kwargs)
    bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    return dict(bound.arguments)


def _json_default(o: Any) -> Any:
    try:  # mpmath.mpf from MathAPI
        return float(o)
    except (TypeError, ValueError):
        return str(o)  # e.g. the literal ``...`` inside BFCL's long-context fixtures


def serialise(result: Any) -> str:
    """A return value as the tool message content: strings as is, anything else as JSON."""
    if isinstance(result, str):
        return result
    return json.dumps(result, default=_json_default, ensure_ascii=False)


def execute(methods: dict, name: str, arguments: dict) -> str:
    try:
        return serialise(methods[name](**arguments))
    except Exception as e:  # noqa: BLE001 - BFCL reports any env exception as an observation
        return f"Error during execution: {e}"


def is_error(observation: str) -> bool:
    if observation.startswith("Error during execution"):
        return True
    try:
        obj = json.loads(observation)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and "error" in obj


def call_label(name: str, arguments: dict) -> str:
    if name == "echo" and not arguments.get("file_name"):
        return "tool_call"  # prints to the terminal, writes nothing
    return FUNCTION_LABELS[name]


# ---------------------------------------------------------------- replay
@lru_cache(maxsize=None)
def _impossible_turns() -> frozenset[str]:
    """User texts of base turns with empty ground truth (requests BFCL deems impossible)."""
    return frozenset(
        turn[0]["content"] for e in _entries("base") for turn, gt in zip(e["question"], e["ground_truth"]) if not gt and turn
    )


def category_of(entry: dict) -> str:
    return entry["id"].rsplit("_", 1)[0].removeprefix("multi_turn_")


def replay(entry: dict) -> list[dict]:
    """Replay one BFCL entry (with ``ground_truth``) -> its validated decision points."""
    category = category_of(entry)
    envs = make_envs(entry)
    methods = method_table(envs)
    excluded = set(entry.get("excluded_function") or [])
    withheld = {n: int(t) for t, names in (entry.get("missed_function") or {}).items() for n in names}
    docs = [t for cls in entry["involved_classes"] for t in _class_tools(cls)]
    tid = entry["id"]
    meta_base = {"source": f"bfcl/multi_turn_{category}", "trajectory_id": tid, "group": f"bfcl_{tid.rsplit('_', 1)[1]}",
                 "domain": "bfcl:" + "+".join(sorted(entry["involved_classes"]))}
    messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
    records: list[dict] = []

    def emit(turn: int, label: str, target: dict | None, tools: list[dict]) -> None:
        step = len(records)
        rec = {
            "id": f"bfcl-{tid}-t{turn}-s{step}",
            "messages": list(messages),
            "tools": tools,
            "label": label,
            "target": target,
            "meta": {**meta_base, "step": step, "turn": turn},
        }
        records.append(validate_record(rec))

    for turn, (user_msgs, gold) in enumerate(zip(entry["question"], entry["ground_truth"])):
        if not user_msgs:  # the turn that releases withheld functions has no user text
            user_msgs = [{"role": "user", "content": ADDED_FUNCTIONS_PROMPT}]
        messages.extend({"role": m["role"], "content": m["content"]} for m in user_msgs)
        tools = [t for t in docs if t["function"]["name"] not in excluded and withheld.get(t["function"]["name"], -1) <= turn]
        if not gold:
            impossible = category != "miss_param" or user_msgs[-1]["content"] in _impossible_turns()
            label = "BLOCKED" if impossible else "ask_clarification"
            emit(turn, label, None, tools)
            messages.append({"role": "assistant", "content": _HISTORY_TEXT[label]})
            continue
        last_error = False
        for k, text in enumerate(gold):
            name, args, kwargs = parse_call(text)
            arguments = call_arguments(methods[name], args, kwargs)
            label = "repair" if last_error else call_label(name, arguments)
            emit(turn, label, {"name": name, "arguments": arguments}, tools)
            call_id = f"call_{turn}_{k}"
            observation = execute(methods, name, arguments)
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "id": call_id, "function": {"name": name, "arguments": arguments}}]})
            messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": observation})
            last_error = is_error(observation)
        emit(turn, "final_answer", None, tools)
        messages.append({"role": "assistant", "content": _HISTORY_TEXT["final_answer"]})
    return records


def load_bfcl(categories=CATEGORIES, max_trajectories: int = 0, seed: int = 0) -> list[dict]:
    """Decision points of the chosen categories. ``max_trajectories`` > 0 keeps that many
    entries per category, a seeded sample (kept in file order)."""
    out: list[dict] = []
    for cat in categories:
        entries = [e for e in _entries(cat) if e["id"] not in KNOWN_BAD]
        if 0 < max_trajectories < len(entries):
            keep = set(random.Random(f"bfcl-{cat}-{seed}").sample(range(len(entries)), max_trajectories))
            entries = [e for i, e in enumerate(entries) if i in keep]
        for e in entries:
            out.extend(replay(e))
    return out


def load_irrelevance(n: int, seed: int = 0) -> list[dict]:
    """``n`` single-turn BFCL irrelevance entries (none of the given functions can serve the
    request) as ``BLOCKED`` decision points; a seeded sample, kept in file order."""
    if n <= 0:
        return []
    entries = _read_jsonl(data_dir() / "BFCL_v4_irrelevance.json")
    if n < len(entries):
        keep = set(random.Random(f"bfcl-irrelevance-{seed}").sample(range(len(entries)), n))
        entries = [e for i, e in enumerate(entries) if i in keep]
    out = []
    for e in entries:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += [{"role": m["role"], "content": m["content"]} for turn in e["question"] for m in turn]
        rec = {
            "id": f"bfcl-{e['id']}-s0",
            "messages": messages,
            "tools": [tool_spec(f) for f in e["function"]],
            "label": "BLOCKED",
            "target": None,
            "meta": {"source": "bfcl/irrelevance", "trajectory_id": e["id"], "group": e["id"], "domain": "bfcl_irrelevance", "step": 0},
        }
        out.append(validate_record(rec))
    return out


# ---------------------------------------------------------------- single-turn sets
# BFCL v4's single-turn sets: real (live_*) or curated user queries against real API schemas,
# one gold turn each. Sets with gold calls, and the irrelevance sets (no function serves the
# request -> BLOCKED, the spec's "impossible with the tools at hand").
SINGLE_TURN_CALLS = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
                     "simple_python", "multiple", "parallel", "parallel_multiple")
SINGLE_TURN_BLOCKED = ("live_irrelevance",)

# Verbs of a function name (or, failing that, its description's first word) -> the spec kind.
# Read-only lookups are retrieval; calculations, conversions and state changes tool_call (as in
# FUNCTION_LABELS above: MathAPI and compute_exchange_rate are tool_call, get_*/check_* retrieval).
_RETRIEVAL_VERBS = frozenset(
    "get fetch retrieve search find lookup look query list show view read check browse locate see describe "
    "finder search_engine track monitor inquire".split())
_ACTION_VERBS = frozenset(
    "calculate calc compute convert create add send book buy purchase order reserve set update delete remove cancel "
    "pay post make schedule play start stop turn run execute generate transfer submit register login logout translate "
    "predict estimate analyse analyze design invest sort solve train save restore rename install close enable disable "
    "trigger reset complete mark plan simulate draw evaluate optimize upload download write edit move copy apply "
    "change adjust control modify rate review share start sell request call notify assign ride".split())
_CALCULATION = re.compile(r"\b(?:calculat|comput|convert|the (?:sum|product|area|average|mean|probability) of)", re.IGNORECASE)
_FILE_NOUNS = frozenset("file files directory directories folder folders dir".split())
_FILE_READ_VERBS = frozenset("get read open list show view find search check cat".split())
_FILE_WRITE_VERBS = frozenset("write create save delete remove move copy rename append edit update upload make".split())


def _words(text: str) -> list[str]:
    """``Hotels_4_SearchHotel`` / ``api.getDataForX`` -> lower-case word tokens."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return [w.lower() for w in re.split(r"[^A-Za-z]+", spaced) if w]


def _verb_kind(words: list[str]) -> str | None:
    for w in words:
        for stem in (w, w[:-1], w[:-2]):  # "retrieves" / "searches" -> the verb
            if stem in _RETRIEVAL_VERBS:
                return "retrieval"
            if stem in _ACTION_VERBS:
                return "tool_call"
    return None


def function_kind(name: str, description: str = "") -> str:
    """The spec label of a call to a single-turn BFCL function, by what the function does: file
    nouns + a read verb -> file_read, + a write verb -> file_write; else the first known verb of the
    name (then: a description that calculates -> tool_call, else its first word's verb): a lookup ->
    retrieval, anything that acts or computes -> tool_call; no known verb -> tool_call (the spec's
    fallback for a tool that acts). A heuristic on names BFCL's authors chose; the tests pin
    hand-checked examples."""
    words = _words(name)
    if _FILE_NOUNS & set(words):
        verbs = [w for w in words if w in _FILE_READ_VERBS | _FILE_WRITE_VERBS]
        if verbs:
            return "file_write" if verbs[0] in _FILE_WRITE_VERBS else "file_read"
    # the method of a dotted name first: "nature_reserve.find_nearby" finds, "requests.get" gets
    kind = _verb_kind(_words(name.rsplit(".", 1)[-1])) or _verb_kind(words)
    if kind is None and _CALCULATION.search(description):
        return "tool_call"  # "Find the sum of all multiples ...": a calculation however it is phrased
    if kind is None:
        kind = _verb_kind(_words(description)[:1])
    return kind or "tool_call"


def _first_value(values: Any) -> Any:
    """BFCL lists the acceptable values of an argument (``""``: 'may be omitted'); a dict value
    lists them per key in turn (``{"size": ["large"], ...}``)."""
    if not isinstance(values, list):
        return values
    v = next((v for v in values if v != ""), None)
    if isinstance(v, dict):
        return {k: _first_value(x) for k, x in v.items() if _first_value(x) is not None}
    return v


def gold_calls(ground_truth: list[dict]) -> list[dict]:
    """``[{"fn": {"arg": [accepted values]}}]`` -> calls with the first accepted value of each argument."""
    calls = []
    for call in ground_truth:
        (name, args), = call.items()
        calls.append({"name": name, "arguments": {k: _first_value(v) for k, v in args.items() if _first_value(v) is not None}})
    return calls


def _single_turn_messages(entry: dict) -> list[dict]:
    """BFCL's system prompt + the entry's own system lines in one system message, then the user turn(s)."""
    turn = [m for t in entry["question"] for m in t]
    system = "\n\n".join([SYSTEM_PROMPT] + [m["content"] for m in turn if m["role"] == "system"])
    return [{"role": "system", "content": system}] + [{"role": m["role"], "content": m["content"]} for m in turn if m["role"] != "system"]


def single_turn_record(entry: dict, name: str, ground_truth: list[dict] | None) -> dict:
    """One single-turn entry -> its decision point. With gold calls: the label is the spec
    precedence over every call's kind (parallel entries call several), the target the first call
    of that label; without (irrelevance): ``BLOCKED``."""
    docs = {f["name"]: f for f in entry["function"]}
    label, target = "BLOCKED", None
    if ground_truth is not None:
        calls = gold_calls(ground_truth)
        kinds = [function_kind(c["name"], docs.get(c["name"], {}).get("description", "")) for c in calls]
        label = resolve(kinds)
        target = calls[kinds.index(label)]
    rec = {"id": f"bfcl-{entry['id']}-s0", "messages": _single_turn_messages(entry),
           "tools": [tool_spec(f) for f in entry["function"]], "label": label, "target": target,
           "meta": {"source": f"bfcl/{name}", "trajectory_id": entry["id"], "group": entry["id"], "domain": f"bfcl_{name}", "step": 0}}
    return validate_record(rec)


def _sample(items: list, n: int, key: str) -> list:
    if n >= len(items):
        return list(items)
    keep = set(random.Random(key).sample(range(len(items)), n))
    return [x for i, x in enumerate(items) if i in keep]


def load_single_turn(counts: dict, seed: int = 0) -> list[dict]:
    """Decision points of BFCL's single-turn sets: ``counts`` maps a set name to how many of its
    entries to take (a seeded sample in file order; 0 = none)."""
    unknown = sorted(set(counts) - set(SINGLE_TURN_CALLS + SINGLE_TURN_BLOCKED))
    if unknown:
        raise ValueError(f"unknown BFCL single-turn set(s) {unknown}; allowed: {list(SINGLE_TURN_CALLS + SINGLE_TURN_BLOCKED)}")
    out = []
    for name in SINGLE_TURN_CALLS + SINGLE_TURN_BLOCKED:
        n = int(counts.get(name, 0))
        if n <= 0:
            continue
        entries = _read_jsonl(data_dir() / f"BFCL_v4_{name}.json")
        answers = {} if name in SINGLE_TURN_BLOCKED else {
            a["id"]: a["ground_truth"] for a in _read_jsonl(data_dir() / "possible_answer" / f"BFCL_v4_{name}.json")}
        for e in _sample([e for e in entries if name in SINGLE_TURN_BLOCKED or e["id"] in answers], n, f"bfcl-{name}-{seed}"):
            out.append(single_turn_record(e, name, answers.get(e["id"]) if answers else None))
    return out


# ---------------------------------------------------------------- derived clarifications
# Words that introduce the removed value ("the weather in Shanghai", "the user with the ID 7890"):
# they go with it, so the request reads as one that simply lacks the detail.
_LEAD_IN = r"(?:(?:in|for|to|from|at|of|on|with|named|called|titled|about|by|near|the|a|an|my|id|ID|number|as)\s+){0,3}"
_MIN_VALUE_CHARS = 3  # shorter values ("5", "NY") also match inside unrelated words and numbers
_PHRASE_END = r"(?=\s*(?:[,.?!;:]|$)|\s+(?:with|in|for|to|from|on|at|and|or|but|this|that|which|using|under|during|by|if|so|as|today|tomorrow|tonight|now|please|next|instead)\b)"
_MAX_VALUE_CHARS = 40  # a detail of the request, not the request itself (a whole quoted answer or query)


def _cut(text: str, value: str) -> str | None:
    """``text`` without ``value`` (and its lead-in words and quotes), tidied; None when the value
    is not there exactly once as a whole word, or the cut leaves too little of a request."""
    if len(re.findall(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text, re.IGNORECASE)) != 1:
        return None
    core = r"(['\"]?)" + re.escape(value) + r"\1(?!\w)"
    # "weather in Miami?" / "from Las Vegas to ...": the value ends a phrase, its lead-in goes too;
    # "a Comedy movie": the value qualifies a word, only the value goes.
    phrase = re.compile(r"(?<!\w)" + _LEAD_IN + core + _PHRASE_END, re.IGNORECASE)
    pattern = phrase if phrase.search(text) else re.compile(r"(?<!\w)" + core, re.IGNORECASE)
    out = pattern.sub("", text, count=1)
    out = re.sub(r"\s+([,.?!;:])", r"\1", re.sub(r"\s{2,}", " ", out)).strip()
    out = re.sub(r"([,;:])\s*([,.?!;:])", r"\2", out)
    if value.lower() in out.lower() or len(out) < 15 or len(out.split()) < 4:
        return None
    return out


def derive_clarification(rec: dict) -> dict | None:
    """An ``ask_clarification`` decision point from a single-call single-turn record: the first
    required argument whose gold value (a string or number of >= 3 characters) appears once, as a
    whole word, in the last user message is cut from it (with its lead-in words). The agent can
    then no longer fill that argument, and the system prompt (BFCL's) asks it to point that out.
    None when no required argument's value cuts cleanly."""
    if rec["label"] not in ("tool_call", "retrieval") or not rec["target"]:
        return None
    spec = next((t["function"] for t in rec["tools"] if t["function"]["name"] == rec["target"]["name"]), None)
    user_idx = max(i for i, m in enumerate(rec["messages"]) if m["role"] == "user")
    for arg in (spec or {}).get("parameters", {}).get("required", []):
        value = rec["target"]["arguments"].get(arg)
        if (isinstance(value, bool) or not isinstance(value, (str, int, float)) or len(str(value)) < _MIN_VALUE_CHARS
                or len(str(value)) > _MAX_VALUE_CHARS or len(str(value).split()) > 4):
            continue
        cut = _cut(rec["messages"][user_idx]["content"], str(value))
        if cut is None:
            continue
        messages = [dict(m) for m in rec["messages"]]
        messages[user_idx]["content"] = cut
        meta = {**rec["meta"], "source": rec["meta"]["source"] + "_clarify", "derived": f"removed required argument {arg!r}",
                "trajectory_id": rec["meta"]["trajectory_id"] + "_clarify"}
        return validate_record({"id": rec["id"].removesuffix("-s0") + "-clarify-s0", "messages": messages, "tools": rec["tools"],
                                "label": "ask_clarification", "target": None, "meta": meta})
    return None


def derive_clarifications(records: list[dict], n: int, seed: int = 0) -> list[dict]:
    """Up to ``n`` derived clarifications (:func:`derive_clarification`) from ``records``, a seeded
    sample of those that cut cleanly. Each keeps its source record's group and domain, so the
    request with and without the value always share a split."""
    if n <= 0:
        return []
    derived = [d for d in (derive_clarification(r) for r in records) if d is not None]
    return _sample(derived, n, f"bfcl-clarify-{seed}")
