"""Agents' own lifecycle hooks, wired to bgmon (opt-in: `bgmon hooks install AGENT`).

install.py merges bgmon's entries into an agent's settings and removes exactly them again;
record.py is the tiny command those entries run (standard library only); events.py reads what
it recorded back as events for the agent's adapter.
"""
