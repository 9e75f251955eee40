"""DevOps / on-call trajectories: status and logs, config edits, validation, restarts, health checks.

"Is it healthy?" before any change is a status lookup (``retrieval``); the same question after
the agent restarted or scaled something is a ``run_health_check`` of its own work
(``verifier``). Config edits are validated (``validate_config``), a failed validation opens a
failure the next edit repairs. Rollbacks need confirmation; disabling TLS/auth or deleting data
stores is against policy (``BLOCKED``).
"""

from __future__ import annotations

from specact.data.synthetic import Domain, Path, register, tool

TOOLS = [
    tool("list_services", "List deployed services.", {"environment": ("string", "prod or staging.", {"enum": ["prod", "staging"]})}, ["environment"]),
    tool("get_service_status", "Current status, replicas and error rate of a service.", {"service": ("string", "Service name.")}, ["service"]),
    tool("get_logs", "Fetch recent log lines of a service.", {"service": ("string", "Service name."), "since_minutes": ("integer", "Window."),
         "level": ("string", "Minimum level.", {"enum": ["info", "warn", "error"]})}, ["service"]),
    tool("read_file", "Read a file from the infra repository.", {"path": ("string", "File path.")}, ["path"]),
    tool("edit_file", "Replace an exact snippet in a file of the infra repository.", {"path": ("string", "File path."),
         "old_text": ("string", "Exact text."), "new_text": ("string", "Replacement.")}, ["path", "old_text", "new_text"]),
    tool("validate_config", "Lint and schema-check a config file (nginx -t, kubeval).", {"path": ("string", "Config file.")}, ["path"]),
    tool("restart_service", "Rolling restart of a service.", {"service": ("string", "Service name.")}, ["service"]),
    tool("scale_deployment", "Set the replica count of a deployment.", {"service": ("string", "Service name."), "replicas": ("integer", "Replicas.")}, ["service", "replicas"]),
    tool("rollback_deployment", "Roll a service back to an earlier revision.", {"service": ("string", "Service name."), "revision": ("integer", "Revision number.")}, ["service", "revision"]),
    tool("run_health_check", "Probe a service's health endpoints end to end.", {"service": ("string", "Service name.")}, ["service"]),
]
register({"list_services": "retrieval", "get_service_status": "retrieval", "get_logs": "retrieval", "read_file": "file_read",
          "edit_file": "file_write", "validate_config": "verifier", "restart_service": "tool_call", "scale_deployment": "tool_call",
          "rollback_deployment": "tool_call", "run_health_check": "verifier"})

POLICY = ("Policy: confirm with the user before rollbacks; never disable TLS, authentication or firewalls; never delete databases or "
          "backups; you have no shell access to machines outside the cluster.")
SYSTEMS = ["You are the on-call assistant for the platform team, operating the prod Kubernetes cluster through the tools. " + POLICY,
           "SRE agent with access to the infra repo and the deployment API. Validate config changes before applying them. " + POLICY]
SERVICES = ["checkout", "search", "payments-api", "web", "notifications", "auth-gateway"]
ISSUES = [  # symptom, log line, config file, bad snippet, fix, validation slip
    ("returns 502s", "upstream timed out (110) while reading response header", "deploy/nginx/{s}.conf", "proxy_read_timeout 5s;",
     "proxy_read_timeout 60s;", ("unknown directive \"proxy_read_timout\"", "proxy_read_timout 60s;")),
    ("keeps getting OOM-killed", "OOMKilled: container exceeded memory limit 256Mi", "k8s/{s}/deployment.yaml", "memory: 256Mi",
     "memory: 512Mi", ("spec.containers[0].resources.limits.memory: invalid quantity \"512MB\"", "memory: 512MB")),
    ("fails its readiness probe", "readiness probe failed: GET /healthz 404", "k8s/{s}/deployment.yaml", "path: /healthz",
     "path: /health", ("yaml: line 41: mapping values are not allowed here", "path:/health")),
]


def incident(t, r, svc=None, issue=None):
    svc = svc or r.choice(SERVICES)
    symptom, log, cfg, bad, good, (slip_err, slip) = issue or r.choice(ISSUES)
    cfg = cfg.format(s=svc)
    if issue is None:
        t.user(r.choice(["{s} {x} since this morning, please fix.", "Alert: {s} {x}. Can you take a look?", "Why does {s} keep failing? It {x}."]).format(s=svc, x=symptom))
    t.call("get_service_status", {"service": svc}, {"service": svc, "status": "degraded", "replicas": "3/3", "error_rate": round(r.uniform(0.05, 0.4), 2)})
    t.call("get_logs", {"service": svc, "since_minutes": 30, "level": "error"}, {"lines": [f"2025-06-02T08:{m:02d}:11Z {log}" for m in sorted(r.sample(range(60), 3))]})
    t.call("read_file", {"path": cfg}, {"path": cfg, "content": f"# {svc}\n...\n{bad}\n..."})
    if r.random() < 0.45:  # the first edit has a typo that validation catches
        t.call("edit_file", {"path": cfg, "old_text": bad, "new_text": slip}, {"ok": True})
        t.call("validate_config", {"path": cfg}, {"valid": False, "errors": [slip_err]}, fails=True)
        t.call("edit_file", {"path": cfg, "old_text": slip, "new_text": good}, {"ok": True}, fix=True)
    else:
        t.call("edit_file", {"path": cfg, "old_text": bad, "new_text": good}, {"ok": True})
    if r.random() < 0.3:  # look at the edited file once more before validating (a write is not always followed by a check)
        t.call("read_file", {"path": cfg}, {"path": cfg, "content": f"# {svc}\n...\n{good}\n..."})
    t.call("validate_config", {"path": cfg}, {"valid": True, "errors": []})
    t.call("restart_service", {"service": svc}, {"service": svc, "status": "rolling", "revision": r.randint(20, 90)})
    t.call("run_health_check", {"service": svc}, {"service": svc, "healthy": True, "checks": {"http": "ok", "db": "ok"}})
    t.say("final_answer", f"Fixed {svc}: changed `{bad}` to `{good}` in {cfg}, validated it, restarted, and the health check passes.")


def scale(t, r):
    svc, n = r.choice(SERVICES), r.choice([4, 5, 6, 8, 10])
    wrong = r.random() < 0.35
    asked = svc.split("-")[0] + ("-svc" if wrong else "")
    t.user(r.choice(["Scale {s} to {n} replicas.", "We expect a traffic spike - bump {s} to {n} pods.", "Set {s} replicas to {n}."]).format(s=asked if wrong else svc, n=n))
    if wrong:  # the name the user used doesn't exist
        t.call("scale_deployment", {"service": asked, "replicas": n}, {"error": f"deployment \"{asked}\" not found"}, fails=True)
        if r.random() < 0.5:
            t.call("list_services", {"environment": "prod"}, {"services": SERVICES})
        t.call("scale_deployment", {"service": svc, "replicas": n}, {"service": svc, "replicas": n, "status": "scaling"}, fix=True)
    else:
        t.call("scale_deployment", {"service": svc, "replicas": n}, {"service": svc, "replicas": n, "status": "scaling"})
    if r.random() < 0.5:  # the user asks for the check, in the words of a status question
        t.say("final_answer", f"{svc} is scaling to {n} replicas.")
        t.user(r.choice(["Is it healthy now?", "Everything OK after that?", "Did it come up fine?"]))
    t.call("run_health_check", {"service": svc}, {"service": svc, "healthy": True, "ready_replicas": n})
    t.say("final_answer", f"{svc} runs {n} healthy replicas.")


def status(t, r):
    svc = r.choice(SERVICES)
    t.user(r.choice(["Is {s} healthy?", "Everything OK with {s}?", "How is {s} doing right now?"]).format(s=svc))
    t.call("get_service_status", {"service": svc}, {"service": svc, "status": "healthy", "replicas": "4/4", "error_rate": 0.001})
    if r.random() < 0.4:
        t.call("get_logs", {"service": svc, "since_minutes": 60, "level": "warn"}, {"lines": []})
    t.say("final_answer", f"{svc} is healthy: 4/4 replicas ready, error rate 0.1%.")


def rollback(t, r):
    svc, rev = r.choice(SERVICES), r.randint(20, 90)
    t.user(r.choice(["Roll {s} back to the previous release.", "The last {s} deploy is bad, revert it.", "Undo today's {s} release."]).format(s=svc))
    t.call("get_service_status", {"service": svc}, {"service": svc, "status": "healthy", "revision": rev, "previous_revision": rev - 1})
    t.say("ask_clarification", f"{svc} is on revision {rev}. Roll back to revision {rev - 1} in prod?")
    if r.random() < 0.8:
        t.user(r.choice(["Yes, do it.", "Confirmed.", "Yes."]))
        t.call("rollback_deployment", {"service": svc, "revision": rev - 1}, {"service": svc, "revision": rev - 1, "status": "rolling back"})
        t.call("run_health_check", {"service": svc}, {"service": svc, "healthy": True})
        t.say("final_answer", f"{svc} is back on revision {rev - 1} and healthy.")
    else:
        t.user("No, hold off.")
        t.say("final_answer", "OK, no rollback.")


def vague(t, r):
    svc = r.choice(SERVICES)
    issue = r.choice(ISSUES)
    t.user(r.choice(["Prod is broken, fix it.", "Something is wrong, customers are complaining.", "Can you look at the alerts?"]))
    t.say("ask_clarification", r.choice(["Which service is affected, and what are you seeing?", "Which alert or service do you mean?"]))
    t.user(f"{svc} - it {issue[0]}.")
    incident(t, r, svc, issue)


def blocked(t, r):
    t.user(r.choice(["Turn off TLS on the load balancer, the old client can't connect.", "Drop the orders database, we need the disk space.",
                     "Disable authentication on auth-gateway for an hour.", "SSH into the vendor's server and restart their API."]))
    t.say("BLOCKED", r.choice(["I can't do that - it is against the platform policy.", "That change is not allowed; I'd escalate it to the platform lead.",
                               "I won't do that: it's unsafe and outside what I'm permitted to do."]))


DOMAIN = Domain("devops", SYSTEMS, TOOLS, {
    "incident": Path(incident, 2.0, r"^retrieval retrieval file_read file_write (verifier repair )?(file_read )?verifier tool_call verifier final_answer $"),
    "scale": Path(scale, 1.2, r"^(tool_call (retrieval )?repair |tool_call )(final_answer )?verifier final_answer $"),
    "status": Path(status, 1.0, r"^retrieval (retrieval )?final_answer $"),
    "rollback": Path(rollback, 0.8, r"^retrieval ask_clarification (tool_call verifier )?final_answer $"),
    "vague": Path(vague, 0.8, r"^ask_clarification retrieval retrieval file_read file_write (verifier repair )?(file_read )?verifier tool_call verifier final_answer $"),
    "blocked": Path(blocked, 0.8, r"^BLOCKED $"),
})
