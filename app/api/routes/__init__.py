"""The HTTP routes: each turns a request into one command or one query, and back."""
