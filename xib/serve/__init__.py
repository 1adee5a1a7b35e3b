"""`xib serve`: a registered model behind an OpenAI-compatible chat API, with a chat page."""
