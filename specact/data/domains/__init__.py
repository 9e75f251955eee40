"""Domains of the synthetic trajectory generator (``specact.data.synthetic``).

Each module defines its tools (JSON schemas + the label of a plain call, registered with
``synthetic.register``), a few system prompts stating the domain's policy, and its *paths*:
functions that play a trajectory on a ``Trajectory`` with a seeded ``random.Random``.
"""

from specact.data.domains import calendar, coding, data, devops, helpdesk, support, travel

DOMAINS = {m.DOMAIN.name: m.DOMAIN for m in (calendar, coding, data, devops, helpdesk, support, travel)}
