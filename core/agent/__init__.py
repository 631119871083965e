"""The agent: claims queue items, builds, submits, supervises, streams logs.

`loop` is the agent itself (claiming, heartbeats, the change feed, restarts),
`runner` takes one run through its stages, and `port` is the narrow Protocol
the agent uses to reach the control plane.
"""

from launch_tui.core.agent.loop import LaunchAgent, default_agent_name
from launch_tui.core.agent.port import AgentPort

__all__ = ["AgentPort", "LaunchAgent", "default_agent_name"]
