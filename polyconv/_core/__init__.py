"""The core layer: backend selection, input conversion, the call cache and the public
operations. Imports the backends, the plan and the spec layers; never a tool."""
