"""Tools: declared once as typed functions, explicitly registered, with pluggable backends."""

from .backends import Availability, Backend
from .registry import Alias, Registry, Tool, UnknownTool, default_registry, tool

__all__ = ["Alias", "Availability", "Backend", "Registry", "Tool", "UnknownTool", "default_registry", "tool"]
