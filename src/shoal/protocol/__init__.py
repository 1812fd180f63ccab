"""The contract between Shoal's parts: typed specs (``specs``), wire messages (``messages``), routes (``routes``).

Everything that crosses a process boundary (SDK to server, server to store, backend and container) is declared
here once; no other module spells a spec key, a message layout or a route path (``server/openapi.py`` describes
the public routes again, for people and the API fuzz test).
"""
