"""The AgentHarness: runs coding agents (Claude Code, Codex, Gemini CLI, any command, or the built-in
script worker) on claimed tasks.

* :mod:`.adapters` — each agent as configuration: command, environment, MCP config format, prompt;
* :mod:`.prompt` — the brief an agent gets: task, dependencies' results, conflicts, memories;
* :mod:`.runner` — one run: spawn in its own process group, log, time out;
* :mod:`.outcome` — what the run achieved, read from the DataLayer and git;
* :mod:`.script_agent` — the built-in deterministic MCP worker, for demos and tests.

(Nothing is imported here: the script worker imports :mod:`.gitwork` and should start fast.)
"""
