"""HTTP: the FastAPI app, OpenAI-shaped schemas and errors. The only package that knows HTTP."""
