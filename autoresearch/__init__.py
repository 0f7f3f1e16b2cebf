"""The agent loop's machinery: everything `agent_loop.py` needs beyond one readable file."""
