"""The planner and agent (LLM clients, prompts, the agent graph, chat sessions).

This package is filled by the planner/agent work; the core does not depend on it.
"""
