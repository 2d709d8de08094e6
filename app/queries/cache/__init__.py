"""In-process caches of the read model (views.py: item views, pages.py: list pages),
kept consistent by the change notices that watcher.py follows."""
