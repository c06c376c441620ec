"""The web app: Flask app factory, its services, API keys, errors and metrics, the WSGI server."""
