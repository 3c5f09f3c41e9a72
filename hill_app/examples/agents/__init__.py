"""Agents in the loop, using only the public client API (``hill_app.client.remote.RemoteRunClient``):
``rule_tuner`` (fixed rules) and ``llm_tuner`` (asks an OpenAI-compatible chat endpoint). See docs/control-server.md."""
