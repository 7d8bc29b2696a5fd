"""The twin's HTTP API, WebSocket streams and web pages (FastAPI, served by uvicorn).

``schemas`` holds the JSON shapes and the route list; ``app`` the application factory.
"""
