"""The app's pages (run through the router in app.py, never on their own)."""
