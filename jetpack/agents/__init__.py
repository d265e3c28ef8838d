"""Agent identity and liveness (the registry grows into the SwarmCoordinator's view of agents)."""

from jetpack.agents.registry import (
    AgentRecord,
    AgentRegistry,
    SessionInfo,
    check_agent_name,
    generate_name,
    parse_skills,
)

__all__ = ["AgentRecord", "AgentRegistry", "SessionInfo", "check_agent_name", "generate_name", "parse_skills"]
